"""TLS with a root certificate file, and the bearer token over it, against a real grpc.aio server."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from errorreplay import ErrorReplayClient, RetryPolicy, SyncErrorReplayClient
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc


def self_signed(tmp_path: Path) -> tuple[bytes, bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert_pem)
    return key_pem, cert_pem, ca


class EchoToken(service_pb2_grpc.ErrorReplayServiceServicer):
    async def GetError(self, request: rr.GetErrorRequest, context: grpc.aio.ServicerContext) -> rr.GetErrorResponse:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        return rr.GetErrorResponse(error=m.ErrorSnapshot(error_id=request.error_id, request_id=auth))


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    key_pem, cert_pem, ca = self_signed(tmp_path)
    server = grpc.aio.server()
    service_pb2_grpc.add_ErrorReplayServiceServicer_to_server(EchoToken(), server)  # type: ignore[abstract]  # partial fake
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    await server.start()
    try:
        yield f"localhost:{port}", ca
    finally:
        await server.stop(grace=None)


async def test_async_client_over_tls_sends_the_token(tls_server: tuple[str, Path]) -> None:
    address, ca = tls_server
    async with ErrorReplayClient(address, root_certificates=ca, token="tok-1") as client:
        snapshot = await client.get("err_tls")
    assert (snapshot.error_id, snapshot.request_id) == ("err_tls", "Bearer tok-1")


async def test_explicit_channel_credentials(tls_server: tuple[str, Path]) -> None:
    address, ca = tls_server
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    async with ErrorReplayClient(address, tls=credentials) as client:
        assert (await client.get("err_x")).error_id == "err_x"


async def test_plaintext_client_cannot_talk_to_a_tls_server(tls_server: tuple[str, Path]) -> None:
    address, _ = tls_server
    async with ErrorReplayClient(address, timeout=2, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.get("err_x")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_sync_client_over_tls(tls_server: tuple[str, Path]) -> None:
    address, ca = tls_server

    def get() -> m.ErrorSnapshot:
        with SyncErrorReplayClient(address, root_certificates=str(ca), token="tok-2") as client:
            return client.get("err_sync")

    snapshot = await asyncio.to_thread(get)
    assert (snapshot.error_id, snapshot.request_id) == ("err_sync", "Bearer tok-2")
