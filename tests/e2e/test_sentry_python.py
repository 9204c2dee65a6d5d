"""The real sentry-sdk (Python) reports to errorreplay with nothing changed but its DSN."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.http.conftest import Http, http_server, http_settings

SCRIPT = Path(__file__).parent / "sentry_python" / "report.py"
SECRETS = (
    "hunter2hunter2",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "abcd1234efgh5678",
    "s3cretPw",
)


async def run_sdk(dsn: str) -> dict[str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), dsn, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def stored_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())


async def search(h: Http) -> list[m.ErrorSnapshot]:
    found = await h.errors.SearchErrors(rr.SearchErrorsRequest(filter={"tags": {"service": "checkout"}}), timeout=10)
    return list(found.errors)


async def test_the_python_sdk_reports_errors_and_messages(tmp_path: Path) -> None:
    async with http_server(http_settings(tmp_path)) as h:
        sent = await run_sdk(h.dsn)
        errors = await search(h)
        by_id = {e.report.attributes["sentry"]["event_id"]: e for e in errors}
        assert set(by_id) == {sent["exception_id"], sent["message_id"]}
        trace_id = sent["traceparent"].split("-")[0]

        failure = by_id[sent["exception_id"]]
        r = failure.report
        assert r.error_type == "RuntimeError"
        assert r.message.startswith("charge failed for cart 17: postgres://app:")
        assert r.severity == m.SEVERITY_HIGH
        assert r.source == m.SOURCE_APPLICATION
        assert (r.release, r.environment) == ("shop@1.4.2", "staging")
        assert (r.resource_id, r.service) == ("checkout", "checkout")
        assert r.tags["server_name"] == "web-7" and r.tags["team"] == "payments"
        assert r.trace_id == trace_id and len(r.span_id) == 16
        assert r.attributes["request"]["method"] == "POST"
        assert r.attributes["request"]["url"].startswith("https://shop.example/api/pay?order=17&api_key=")
        # A readable trace, the chain oldest first: the KeyError, then the RuntimeError it led to.
        trace = r.stack_trace
        assert trace.index("KeyError: 'card'") < trace.index("The above exception led to the next one")
        assert trace.index("The above exception led to the next one") < trace.index("RuntimeError: charge failed")
        assert 'report.py", line' in trace and "in read_card" in trace and 'return cart["card"]' in trace
        # Breadcrumbs are the error's frozen context, as log lines.
        lines = [(line.collector, line.level, line.message) for line in failure.context.logs]
        assert ("client", "info", "loading cart 17 for customer 5") in lines
        assert any(msg.startswith("payment provider answered slowly") for _, _, msg in lines)
        assert failure.request_id == f"sentry:42:{sent['exception_id']}"

        message = by_id[sent["message_id"]]
        assert message.report.message == "inventory low for sku 9"
        assert message.report.severity == m.SEVERITY_MEDIUM
        assert message.report.error_type == "" and message.report.resource_id == "checkout"

        replay = await h.errors.ReplayError(rr.ReplayErrorRequest(error_id=failure.error_id), timeout=10)
        assert replay.error.error_id == failure.error_id
        assert any(e.reference_id == failure.error_id for e in replay.timeline)

        # No secret reached the store: not in what the API returns, not in any byte on disk.
        everything = str(errors).encode() + stored_bytes(tmp_path)
        for secret in SECRETS:
            assert secret.encode() not in everything, secret
        assert "[REDACTED:" in r.message and "[REDACTED:" in r.attributes["request"]["url"]
        assert any("[REDACTED:" in msg for _, _, msg in lines)
