"""TLS and mTLS with certificates made at test time: who gets in and who does not."""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.api.tls import server_credentials
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.settings import Settings
from tests.grpc.test_auth import bearer, secured_server

HANDSHAKE_TIMEOUT = 5.0


@dataclass
class Issued:
    cert: Path
    key: Path

    def pair(self) -> tuple[bytes, bytes]:
        """(private key, certificate chain) as grpc.ssl_channel_credentials takes them."""
        return self.key.read_bytes(), self.cert.read_bytes()


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    other_ca: Issued
    rogue_client: Issued  # signed by other_ca
    other_server: Issued  # a second server certificate by the right CA, to mismatch keys


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Issued(cert_path, key_path)


def _issue(
    directory: Path,
    stem: str,
    common_name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> tuple[Issued, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer[0].subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
    signer = issuer[1] if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    return _write(directory, stem, cert, key), cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = _issue(directory, "ca", "errorreplay test CA", None)
    server, _, _ = _issue(directory, "server", "errorreplay server", (ca_cert, ca_key), server=True)
    client, _, _ = _issue(directory, "client", "a client", (ca_cert, ca_key))
    other_ca, other_cert, other_key = _issue(directory, "other-ca", "someone else's CA", None)
    rogue, _, _ = _issue(directory, "rogue", "a rogue client", (other_cert, other_key))
    other_server, _, _ = _issue(directory, "other-server", "another server", (ca_cert, ca_key), server=True)
    return Pki(ca, server, client, other_ca, rogue, other_server)


def tls_settings(pki: Pki, mtls: bool = False, **kw: object) -> SecuritySettings:
    return SecuritySettings(
        tls_cert_file=pki.server.cert,
        tls_key_file=pki.server.key,
        tls_client_ca_file=pki.ca.cert if mtls else None,
        **kw,  # type: ignore[arg-type]
    )


def secure_channel(pki: Pki, port: int, client: Issued | None = None, roots: Issued | None = None) -> grpc.aio.Channel:
    key, chain = client.pair() if client else (None, None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(roots or pki.ca).cert.read_bytes(), private_key=key, certificate_chain=chain
    )
    return grpc.aio.secure_channel(f"localhost:{port}", credentials)


async def health_code(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=HANDSHAKE_TIMEOUT
        )
    except grpc.aio.AioRpcError as err:
        return err.code()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK


async def capture(channel: grpc.aio.Channel, **call: object) -> rr.CaptureErrorResponse:
    request = rr.CaptureErrorRequest(
        error=m.ErrorReport(
            message="over tls", severity=m.SEVERITY_LOW, source=m.SOURCE_APPLICATION, tags={"run": uuid.uuid4().hex}
        )
    )
    return await service_pb2_grpc.ErrorReplayServiceStub(channel).CaptureError(request, timeout=10, **call)  # type: ignore[arg-type]


REFUSED = (grpc.StatusCode.UNAVAILABLE,)


# --- settings and credentials --------------------------------------------------------------------


def test_tls_settings_from_env(pki: Pki) -> None:
    security = Settings.from_env(
        {
            "ERRORREPLAY_TLS_CERT_FILE": str(pki.server.cert),
            "ERRORREPLAY_TLS_KEY_FILE": str(pki.server.key),
            "ERRORREPLAY_TLS_CLIENT_CA_FILE": str(pki.ca.cert),
        }
    ).security
    assert security.tls_enabled and security.mtls_enabled
    assert security.tls_cert_file == pki.server.cert and security.tls_client_ca_file == pki.ca.cert
    plain = Settings.from_env({}).security
    assert not plain.tls_enabled and server_credentials(plain) is None


@pytest.mark.parametrize(
    "names",
    [
        ("ERRORREPLAY_TLS_KEY_FILE",),
        ("ERRORREPLAY_TLS_CERT_FILE",),
        ("ERRORREPLAY_TLS_CLIENT_CA_FILE",),
        ("ERRORREPLAY_TLS_CERT_FILE", "ERRORREPLAY_TLS_CLIENT_CA_FILE"),
    ],
)
def test_incomplete_tls_settings_fail(pki: Pki, names: tuple[str, ...]) -> None:
    values = {
        "ERRORREPLAY_TLS_CERT_FILE": str(pki.server.cert),
        "ERRORREPLAY_TLS_KEY_FILE": str(pki.server.key),
        "ERRORREPLAY_TLS_CLIENT_CA_FILE": str(pki.ca.cert),
    }
    with pytest.raises(ValueError, match="ERRORREPLAY_TLS_"):
        Settings.from_env({name: values[name] for name in names})


def test_unusable_files_fail_at_start_up_without_showing_the_key(pki: Pki, tmp_path: Path) -> None:
    key_text = pki.server.key.read_text()
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    cases = [
        SecuritySettings(tls_cert_file=tmp_path / "absent.crt", tls_key_file=pki.server.key),
        SecuritySettings(tls_cert_file=pki.server.cert, tls_key_file=not_pem),
        SecuritySettings(tls_cert_file=pki.server.cert, tls_key_file=pki.other_server.key),  # not its key
        SecuritySettings(tls_cert_file=pki.server.cert, tls_key_file=pki.server.key, tls_client_ca_file=not_pem),
    ]
    for security in cases:
        with pytest.raises(ValueError, match="ERRORREPLAY_TLS_") as info:
            server_credentials(security)
        assert key_text.strip().splitlines()[1] not in str(info.value)


# --- TLS -------------------------------------------------------------------------------------------


async def test_tls_client_works_and_plaintext_fails(pki: Pki, tmp_path: Path) -> None:
    security = tls_settings(pki)
    async with secured_server(tmp_path, security, credentials=server_credentials(security)) as srv:
        port = srv.running.port
        async with secure_channel(pki, port) as channel:
            assert await health_code(channel) == grpc.StatusCode.OK
            assert (await capture(channel)).error_id
        # The default secured_server channel is plaintext.
        assert await health_code(srv.channel) in REFUSED
        # A client that does not trust our CA refuses the server.
        async with secure_channel(pki, port, roots=pki.other_ca) as channel:
            assert await health_code(channel) in REFUSED
        # The IP SAN works too.
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            assert await health_code(channel) == grpc.StatusCode.OK


async def test_mtls_requires_a_client_certificate_from_the_ca(pki: Pki, tmp_path: Path) -> None:
    security = tls_settings(pki, mtls=True)
    async with secured_server(tmp_path, security, credentials=server_credentials(security)) as srv:
        port = srv.running.port
        async with secure_channel(pki, port) as channel:
            assert await health_code(channel) in REFUSED, "no client certificate"
        async with secure_channel(pki, port, client=pki.rogue_client) as channel:
            assert await health_code(channel) in REFUSED, "a client certificate from another CA"
        assert await health_code(srv.channel) in REFUSED, "plaintext"
        async with secure_channel(pki, port, client=pki.client) as channel:
            assert await health_code(channel) == grpc.StatusCode.OK
            assert (await capture(channel)).error_id


async def test_mtls_and_bearer_tokens_together(pki: Pki, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    security = tls_settings(pki, mtls=True, tokens=(TokenGrant(Role.WRITER, token),))
    async with (
        secured_server(tmp_path, security, credentials=server_credentials(security)) as srv,
        secure_channel(pki, srv.running.port, client=pki.client) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await capture(channel)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # a certificate alone is not a role
        assert (await capture(channel, metadata=bearer(token))).error_id
