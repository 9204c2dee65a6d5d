"""Real private keys, generated at test time, in every PEM and OpenSSH encoding we know."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from errorreplay_server.capture.scrubbing import SecretScrubber

serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
ed25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")

SCRUBBER = SecretScrubber()
MASK = "[REDACTED:private_key]"
Enc = serialization.Encoding
Fmt = serialization.PrivateFormat


def _rsa() -> object:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _ec() -> object:
    return ec.generate_private_key(ec.SECP256R1())


def _ed() -> object:
    return ed25519.Ed25519PrivateKey.generate()


NONE = serialization.NoEncryption()
PASSWORD = serialization.BestAvailableEncryption(b"correct horse")

KEYS: list[tuple[str, Callable[[], object], object, object, str]] = [
    ("rsa-pkcs1", _rsa, Fmt.TraditionalOpenSSL, NONE, "RSA PRIVATE KEY"),
    ("rsa-pkcs1-encrypted", _rsa, Fmt.TraditionalOpenSSL, PASSWORD, "RSA PRIVATE KEY"),
    ("rsa-pkcs8", _rsa, Fmt.PKCS8, NONE, "PRIVATE KEY"),
    ("rsa-pkcs8-encrypted", _rsa, Fmt.PKCS8, PASSWORD, "ENCRYPTED PRIVATE KEY"),
    ("rsa-openssh", _rsa, Fmt.OpenSSH, NONE, "OPENSSH PRIVATE KEY"),
    ("ec-sec1", _ec, Fmt.TraditionalOpenSSL, NONE, "EC PRIVATE KEY"),
    ("ec-pkcs8", _ec, Fmt.PKCS8, NONE, "PRIVATE KEY"),
    ("ed25519-openssh", _ed, Fmt.OpenSSH, NONE, "OPENSSH PRIVATE KEY"),
]


def _body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----") and ":" not in line]


@pytest.mark.parametrize(("name", "make", "fmt", "enc", "label"), KEYS, ids=[k[0] for k in KEYS])
def test_generated_private_key_is_masked(
    name: str, make: Callable[[], object], fmt: object, enc: object, label: str
) -> None:
    key = make()
    pem = key.private_bytes(Enc.PEM, fmt, enc).decode()  # type: ignore[attr-defined]
    text = f"failed to load key:\n{pem}\nat startup"
    out = SCRUBBER.scrub_text(text)
    assert out == f"failed to load key:\n-----BEGIN {label}-----\n{MASK}\n-----END {label}-----\n\nat startup"
    assert not [line for line in _body_lines(pem) if line in out]
    # The same key inside JSON, with escaped line breaks.
    escaped = pem.replace("\n", "\\n")
    out = SCRUBBER.scrub_text('{"private_key": "' + escaped + '"}')
    assert out == '{"private_key": "' + MASK + '"}'


@pytest.mark.parametrize("make", [_rsa, _ec, _ed], ids=["rsa", "ec", "ed25519"])
def test_generated_public_keys_are_unchanged(make: Callable[[], object]) -> None:
    public = make().public_key()  # type: ignore[attr-defined]
    pem = public.public_bytes(Enc.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ssh = public.public_bytes(Enc.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    for text in (pem, ssh + " deploy@ci"):
        assert SCRUBBER.scrub_text(text) == text
