"""The real @sentry/node reports to errorreplay with nothing changed but its DSN: a second language.

`npm install` runs in tests/e2e/sentry_node when its node_modules is missing (CI has node and npm)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.e2e.test_sentry_python import stored_bytes
from tests.http.conftest import http_server, http_settings

APP = Path(__file__).parent / "sentry_node"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not installed"
)


@pytest.fixture(scope="module")
def sentry_node() -> Path:
    if not (APP / "node_modules" / "@sentry" / "node").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=APP, check=True, timeout=600)
    return APP / "report.mjs"


async def test_the_node_sdk_reports_errors_and_messages(tmp_path: Path, sentry_node: Path) -> None:
    async with http_server(http_settings(tmp_path)) as h:
        process = await asyncio.create_subprocess_exec(
            "node", str(sentry_node), h.dsn, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        sent = json.loads(out.decode().strip().splitlines()[-1])
        assert sent["flushed"] is True

        found = await h.errors.SearchErrors(rr.SearchErrorsRequest(filter={"tags": {"service": "storefront"}}))
        by_id = {e.report.attributes["sentry"]["event_id"]: e for e in found.errors}
        assert set(by_id) == {sent["exceptionId"], sent["messageId"]}

        failure = by_id[sent["exceptionId"]]
        r = failure.report
        assert r.error_type == "Error" and r.message.startswith("checkout failed: api_key=")
        assert (r.release, r.environment, r.resource_id) == ("storefront@2.0.1", "production", "storefront")
        assert r.tags["server_name"] == "node-3"
        assert r.attributes["sentry"]["platform"] == "node"
        assert len(r.trace_id) == 32 and int(r.trace_id, 16)
        trace = r.stack_trace
        assert trace.index("SyntaxError") < trace.index("The above exception led to the next one")
        assert trace.index("The above exception led to the next one") < trace.index("Error: checkout failed")
        assert "report.mjs" in trace and "in parsePayment" in trace and "in checkout" in trace
        logs = [(line.collector, line.message) for line in failure.context.logs]
        assert ("client", "added sku 9 to cart 17") in logs

        message = by_id[sent["messageId"]]
        assert message.report.message == "storefront degraded: cart service slow"
        assert message.report.severity == m.SEVERITY_MEDIUM

        everything = str(found).encode() + stored_bytes(tmp_path)
        for secret in (b"hunter2hunter2", b"abcd1234efgh5678"):
            assert secret not in everything
