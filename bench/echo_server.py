"""The bare reference: a grpc.aio server over the same generated messages, with no storage."""

from __future__ import annotations

import argparse
import asyncio

import grpc

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc


class EchoServicer(service_pb2_grpc.ErrorReplayServiceServicer):
    async def CaptureError(self, request: rr.CaptureErrorRequest, context: object) -> rr.CaptureErrorResponse:
        response = rr.CaptureErrorResponse(error_id="err_echo", group_id="grp_echo")
        response.error.report.CopyFrom(request.error)
        return response

    async def BatchCaptureErrors(
        self, request: rr.BatchCaptureErrorsRequest, context: object
    ) -> rr.BatchCaptureErrorsResponse:
        response = rr.BatchCaptureErrorsResponse(stored_count=len(request.requests))
        for i, item in enumerate(request.requests):
            slot = response.results.add(index=i)
            slot.response.error_id = "err_echo"
            if request.include_snapshots:  # as the real server: ids only unless asked
                slot.response.error.report.CopyFrom(item.error)
        return response


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1:0")
    args = parser.parse_args()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    service_pb2_grpc.add_ErrorReplayServiceServicer_to_server(EchoServicer(), server)
    port = server.add_insecure_port(args.address)
    await server.start()
    print(f"PORT {port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
