"""TLS and mutual TLS for the gRPC port, from PEM files named in SecuritySettings.

- `ERRORREPLAY_TLS_CERT_FILE` + `ERRORREPLAY_TLS_KEY_FILE`: the server's certificate chain and key;
  the port then speaks TLS only, and plaintext clients fail their handshake.
- `ERRORREPLAY_TLS_CLIENT_CA_FILE` as well: mTLS. Every client must present a certificate signed by
  one of these CAs; a client without one, or with one from another CA, fails its handshake.

The files are read once at start-up; replacing a certificate needs a restart. A file that is
missing, unreadable or not PEM stops the start-up with a message naming the variable and the path
(never the content: the key file is a secret).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from errorreplay_server.security_settings import SecuritySettings

_PEM_MARKER = b"-----BEGIN "


def read_pem(path: Path, variable: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    if _PEM_MARKER not in data:
        raise ValueError(f"{variable}: {path} is not a PEM file")
    return data


def _no_password() -> str:
    raise ValueError("encrypted private keys are not supported")


def check_key_pair(cert_file: Path, key_file: Path) -> None:
    """Fails at start-up, not at the first handshake, when the key does not match the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(
            f"ERRORREPLAY_TLS_CERT_FILE {cert_file} and ERRORREPLAY_TLS_KEY_FILE {key_file} "
            f"are not a usable certificate and key pair: {exc}"
        ) from None


def server_credentials(security: SecuritySettings) -> grpc.ServerCredentials | None:
    """Credentials for `add_secure_port`, or None when TLS is not configured (plaintext port)."""
    if security.tls_cert_file is None or security.tls_key_file is None:
        return None
    cert = read_pem(security.tls_cert_file, "ERRORREPLAY_TLS_CERT_FILE")
    key = read_pem(security.tls_key_file, "ERRORREPLAY_TLS_KEY_FILE")
    check_key_pair(security.tls_cert_file, security.tls_key_file)
    if security.tls_client_ca_file is None:
        return grpc.ssl_server_credentials([(key, cert)])
    client_ca = read_pem(security.tls_client_ca_file, "ERRORREPLAY_TLS_CLIENT_CA_FILE")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=True)
