"""Raw bytes straight to every method path, and fuzzed credentials against a secured server.

The bytes are random, mutations of valid requests, hand-made wire records, or nesting far beyond
the protobuf parser's recursion limit. Whatever arrives, the answer is a status (INVALID_ARGUMENT
for bytes that do not parse), never INTERNAL or UNKNOWN, and the server stays healthy.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.security_settings import SecuritySettings
from tests.fuzz import strategies as fz
from tests.fuzz.conftest import (
    METHODS,
    FuzzServer,
    fuzz_settings,
    start_fuzz_server,
    stop_fuzz_server,
    timeout_for,
)

SHARES = {"raw": 0.24, "credentials": 0.06}

VALID: dict[str, st.SearchStrategy[Any]] = {
    "CaptureError": fz.capture_requests(),
    "BatchCaptureErrors": fz.batch_requests(),
    "SearchErrors": fz.search_requests(),
    "GetStatistics": fz.statistics_requests(),
    "SubscribeErrors": fz.subscribe_requests(list),
}


def valid_requests(path: str) -> st.SearchStrategy[Any]:
    method = METHODS[path]
    if method.name in VALID:
        return VALID[method.name]
    return st.just(getattr(rr, method.input_type.name)())


PATHS = [*sorted(METHODS), "/grpc.health.v1.Health/Check"]


def path_and_payload() -> st.SearchStrategy[tuple[str, bytes]]:
    def payloads(path: str) -> st.SearchStrategy[tuple[str, bytes]]:
        valid = valid_requests(path) if path in METHODS else st.just(rr.GetErrorRequest(error_id="x"))
        return st.tuples(st.just(path), fz.raw_payloads(valid))

    return st.sampled_from(PATHS).flatmap(payloads)


@pytest.mark.timeout(timeout_for(SHARES["raw"]))
def test_fuzz_raw_bytes_to_every_method(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["raw"])
    @given(call=path_and_payload())
    def run(call: tuple[str, bytes]) -> None:
        fuzz_server.call(*call)

    run()
    fuzz_server.assert_healthy()


def test_every_method_refuses_unparseable_bytes(fuzz_server: FuzzServer) -> None:
    """Deterministic companions of the fuzz: each path gets garbage and deep nesting once."""
    for path in PATHS:
        for payload in (b"\xff\xff\xff\xff", b"\x0a\x05ab"):  # a bad tag; a field cut short
            assert fuzz_server.call(path, payload) == grpc.StatusCode.INVALID_ARGUMENT, (path, payload)
    capture = "/errorreplay.v1.ErrorReplayService/CaptureError"
    for depth in (20, 99, 200, 3000):  # within, at and far beyond the parser's recursion limit
        assert fuzz_server.call(capture, fz.nested_attributes_bytes(depth)) == grpc.StatusCode.INVALID_ARGUMENT
    fuzz_server.assert_healthy()


@pytest.fixture(scope="module")
def secured_fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FuzzServer, str]]:
    token = secrets.token_urlsafe(24)
    security = SecuritySettings(tokens=(TokenGrant(Role.ADMIN, token),))
    server = start_fuzz_server(
        tmp_path_factory.mktemp("fuzz-auth"), security, auth=(("authorization", f"Bearer {token}"),)
    )
    try:
        yield server, token
    finally:
        stop_fuzz_server(server)


PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@pytest.mark.timeout(timeout_for(SHARES["credentials"]))
def test_fuzz_credentials(secured_fuzz_server: tuple[FuzzServer, str]) -> None:
    server, token = secured_fuzz_server
    headers = st.one_of(
        PRINTABLE,
        PRINTABLE.map(lambda t: f"Bearer {t}"),
        st.sampled_from(["Bearer", "Bearer ", "bearer  ", "Basic Zm9vOmJhcg==", "Bearer " + "A" * 4096]),
        st.integers(0, len(token) - 1).map(lambda n: "Bearer " + token[:n]),  # prefixes, never all of it
        st.just("Bearer " + token + "x"),
    )

    @fuzz_settings(SHARES["credentials"])
    @given(header=headers, path=st.sampled_from(sorted(METHODS)), payload=st.binary(max_size=64))
    def run(header: str, path: str, payload: bytes) -> None:
        code = server.call(path, payload, metadata=(("authorization", header),))
        assert code == grpc.StatusCode.UNAUTHENTICATED, (header, code)

    run()
    server.assert_healthy()  # with the token: the fuzz locked nobody out
