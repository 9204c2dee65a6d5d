"""Where a captured error's CPU goes: the batch capture path, stage by stage, on one thread.

No gRPC and no event-loop contention: each stage runs alone over the same 100-error batches the
load generator sends, so the sum is a floor on the server's Python work per error.

    python -m bench.stages      # prints microseconds per error for each stage
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.load import make_report
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.api import servicer
from errorreplay_server.capture.scrubbing import SecretScrubber
from errorreplay_server.capture.service import CaptureService
from errorreplay_server.settings import Settings
from errorreplay_server.store.sqlite import SqliteStore

BATCH = 100
WARM_UP, MEASURED = 10, 50


async def measure() -> dict[str, float]:
    spent: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="errorreplay-stages-") as tmp:
        store = SqliteStore(Path(tmp) / "errorreplay.db")
        await store.start()
        try:
            capture = CaptureService(store, SecretScrubber.from_env({}), Settings.from_env({}).limits)
            await capture.start()
            for k in range(WARM_UP + MEASURED):
                wire = rr.BatchCaptureErrorsRequest(
                    requests=[rr.CaptureErrorRequest(error=make_report(k * BATCH + j, "stages")) for j in range(BATCH)]
                ).SerializeToString()
                marks = [time.perf_counter()]
                request = rr.BatchCaptureErrorsRequest.FromString(wire)
                marks.append(time.perf_counter())
                domain = [servicer._capture_request(item, "") for item in request.requests]
                marks.append(time.perf_counter())
                prepared = [capture._prepare(item, "") for item in domain]
                marks.append(time.perf_counter())
                outcomes = await capture.commit(prepared)  # stamps, then Store.capture
                marks.append(time.perf_counter())
                response = rr.BatchCaptureErrorsResponse()
                for i, outcome in enumerate(outcomes):
                    servicer._capture_response(outcome, response.results.add(index=i).response)
                marks.append(time.perf_counter())
                response.SerializeToString()
                marks.append(time.perf_counter())
                if k >= WARM_UP:
                    names = ("parse", "to domain", "validate, scrub, fingerprint", "store", "response", "serialise")
                    for name, start, end in zip(names, marks, marks[1:], strict=False):
                        spent[name] += end - start
        finally:
            await store.close()
    per_error = {name: round(seconds / (MEASURED * BATCH) * 1e6, 1) for name, seconds in spent.items()}
    per_error["total"] = round(sum(per_error.values()), 1)
    return per_error


def main() -> None:
    per_error = asyncio.run(measure())
    for name, micros in per_error.items():
        print(f"{name:30s} {micros:7.1f} µs per error")
    print(f"{'one core at this rate':30s} {1e6 / per_error['total']:7.0f} errors/s")
    print(json.dumps(per_error))


if __name__ == "__main__":
    main()
