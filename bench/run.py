"""`make bench`: errorreplay against a bare grpc.aio echo server, measured in one run.

Every figure comes from separate processes: the servers (`errorreplay serve` and
`bench.echo_server`) and the load generators (`bench.load`, `bench.reads`, `bench.fanout`).
Prints a table and writes bench/results.json.

    python -m bench.run            # full: 100k and 1M stored errors, about 10-15 minutes
    python -m bench.run --quick    # under 2 minutes: shorter runs, 20k stored errors
    python -m bench.run --quick --only otlp   # only BatchCaptureErrors and OTLP export, same server
    python -m bench.run --quick --only notify # only capture-to-notification latency
    python -m bench.run --quick --only jetstream   # only fan-out through NATS JetStream, 2 replicas
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results.json"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python(*args: str, timeout: float = 1800) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def wait_ready(address: str, timeout: float = 60, health: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(address) as channel:
                grpc.channel_ready_future(channel).result(timeout=1)
                if health:
                    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
        except (grpc.RpcError, grpc.FutureTimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{address} did not become ready")


@contextmanager
def errorreplay_server(data_dir: Path, workers: int = 0, **env: str) -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    full_env = {
        **os.environ,
        "ERRORREPLAY_LISTEN_ADDRESS": address,
        "ERRORREPLAY_DATA_DIR": str(data_dir),
        "ERRORREPLAY_METRICS_PORT": "0",
        "ERRORREPLAY_LOG_LEVEL": "WARNING",
        "ERRORREPLAY_HTTP_ADDRESS": "off",
        **env,
    }
    args = ["--workers", str(workers)] if workers else []
    proc = subprocess.Popen([str(BIN / "errorreplay"), "serve", *args], env=full_env, cwd=ROOT)
    SERVER_PIDS[address] = proc.pid
    try:
        wait_ready(address)
        if workers:
            # Serving once the first worker is; measured once all are (the supervisor's children).
            deadline = time.monotonic() + 60
            while len(child_pids(proc.pid)) < workers + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
        yield address
    finally:
        proc.terminate()
        proc.wait(60)


@contextmanager
def echo_server() -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.echo_server", "--address", address], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    SERVER_PIDS[address] = proc.pid
    try:
        wait_ready(address, health=False)
        yield address
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def slow_backend(delay: float = 0.1) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.slow_backend", "--port", str(port), "--delay", str(delay)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


SERVER_PIDS: dict[str, int] = {}  # address -> pid of the server process listening there


def child_pids(pid: int) -> list[int]:
    """The children of a process (Linux /proc), e.g. a --workers server's writer and workers."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc): a --workers
    server is a supervisor, a writer and the workers."""
    total = 0.0
    for p in (pid, *child_pids(pid)):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def load(address: str, *args: str) -> dict[str, Any]:
    """bench.load against `address`, with the CPU the server spent meanwhile: both servers are
    held to about one core by the GIL, so CPU per call is what sets the ceiling."""
    before = cpu_seconds(SERVER_PIDS[address])
    result = python("bench.load", "--target", address, *args)
    used = cpu_seconds(SERVER_PIDS[address]) - before
    result["server_cpu_cores"] = round(used / result["seconds"], 2)
    result["server_cpu_us_per_error"] = round(used / max(1.0, result["errors_per_s"] * result["seconds"]) * 1e6, 1)
    return result


SENTRY_PROJECT, SENTRY_KEY = "1", "benchkey0123456789abcdef"


@contextmanager
def sentry_server(data_dir: Path) -> Iterator[tuple[str, str]]:
    """errorreplay with its HTTP listener on and one Sentry key: (gRPC address, HTTP base URL)."""
    http = f"127.0.0.1:{free_port()}"
    with errorreplay_server(
        data_dir,
        ERRORREPLAY_ENRICHMENT="off",
        ERRORREPLAY_HTTP_ADDRESS=http,
        ERRORREPLAY_SENTRY_KEYS=f"{SENTRY_PROJECT}:{SENTRY_KEY}",
    ) as address:
        yield address, f"http://{http}"


def sentry_load(address: str, url: str, *args: str) -> dict[str, Any]:
    """Sentry envelopes per second through the HTTP listener (bench.load --mode sentry)."""
    sentry = ("--mode", "sentry", "--sentry-url", url, "--sentry-project", SENTRY_PROJECT, "--sentry-key", SENTRY_KEY)
    return load(address, *sentry, *args)


def sentry_row(result: dict[str, Any], capture: dict[str, Any] | None) -> tuple[str, str, str]:
    versus = f"{result['errors_per_s'] / capture['calls_per_s']:.2f}× CaptureError; " if capture else ""
    by_status = ", ".join(f"{n} × HTTP {status}" for status, n in result["failures_by_status"].items())
    return (
        "Sentry envelopes, gzip (64 in flight)",
        f"{result['errors_per_s']:.0f} events/s",
        f"{versus}p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; {result['failures']} failed"
        + (f" ({by_status})" if by_status else "")
        + "; "
        + cpu_note(result, "event"),
    )


def cpu_note(result: dict[str, Any], unit: str) -> str:
    return f"server CPU {result['server_cpu_cores']} cores, {result['server_cpu_us_per_error']:.0f} µs/{unit}"


def enrichment_completed(metrics_port: int) -> float:
    """Enrichment jobs the server has finished, from its own /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('errorreplay_enrichment_jobs_total{outcome="completed"}'):
                return float(line.split()[-1])
    raise RuntimeError("no errorreplay_enrichment_jobs_total in /metrics")


def db_bytes(data_dir: Path) -> int:
    """The stored size once the write-ahead log is folded into the database. Whether the seeding
    process left its log (up to ~70 MB) depends on when SQLite last checkpointed, so counting the
    files as they are could swing a 20,000-error figure between about 1.9 and 5.2 KB per error."""
    with contextlib.closing(sqlite3.connect(data_dir / "errorreplay.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in data_dir.glob("errorreplay.db*"))


def batch_load(load_seconds: str) -> tuple[str, ...]:
    """The load of every batched row (echo, BatchCaptureErrors, OTLP export): 100 per call, 4 in flight."""
    return ("--batch", "100", "--concurrency", "4", "--duration", load_seconds)


def batch_and_otlp(address: str, load_seconds: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """BatchCaptureErrors and OTLP trace exports of as many errors per call, same server, same load."""
    common = batch_load(load_seconds)
    batch = load(address, "--mode", "batch", *common)
    otlp = load(address, "--mode", "otlp", *common)
    if otlp["rejected"] or otlp["failures"]:
        raise RuntimeError(f"OTLP exports were not all stored: {otlp}")
    return batch, otlp


def otlp_row(otlp: dict[str, Any], batch: dict[str, Any]) -> tuple[str, str, str]:
    ratio = otlp["errors_per_s"] / batch["errors_per_s"]
    return (
        "OTLP TraceService/Export (100 exception events per call)",
        f"{otlp['errors_per_s']:.0f} errors/s",
        f"{ratio:.2f}× BatchCaptureErrors; p50 {otlp['p50_ms']} ms, p99 {otlp['p99_ms']} ms; "
        + cpu_note(otlp, "error"),
    )


# The process model's rows: one process (0) and `serve --workers N`. The load spreads its calls over
# PROCESS_MODEL_CHANNELS connections (workers share a port per connection, not per call); the
# echo baseline gets the same load.
PROCESS_MODEL_CHANNELS = "4"
FANOUT_RATES = (100, 200, 300, 400)


def process_model(tmp_path: Path, load_seconds: str, fan_seconds: int, quick: bool) -> dict[str, Any]:
    spread = ("--channels", PROCESS_MODEL_CHANNELS)
    unary = ("--duration", load_seconds, *spread)
    batch = ("--mode", "batch", *batch_load(load_seconds), *spread)
    out: dict[str, Any] = {}
    with echo_server() as echo:
        out["echo_unary"] = load(echo, *unary)
        out["echo_batch"] = load(echo, *batch)
    for workers in (0, 2) if quick else (0, 1, 2):
        row: dict[str, Any] = {}
        with errorreplay_server(tmp_path / f"model-{workers}", workers, ERRORREPLAY_ENRICHMENT="off") as address:
            row["capture_unary"] = load(address, *unary)
            row["capture_batch"] = load(address, *batch)
        # Fan-out on a fresh server, as the fan-out rows above.
        with errorreplay_server(tmp_path / f"fanout-{workers}", workers, ERRORREPLAY_ENRICHMENT="off") as address:
            row["fanout"] = []
            for rate in (100,) if quick else FANOUT_RATES:
                fan = python(
                    "bench.fanout", "--target", address, "--subscribers", "100", "--rate", str(rate),
                    "--seconds", str(fan_seconds),
                )  # fmt: skip
                row["fanout"].append(fan)
                if not fanout_holds(fan) and rate > 100:
                    break  # higher rates only do worse
        row["unary_ratio"] = round(row["capture_unary"]["calls_per_s"] / out["echo_unary"]["calls_per_s"], 3)
        holding = [f["rate_per_s"] for f in row["fanout"] if fanout_holds(f)]
        row["fanout_highest_rate_p99_under_50ms"] = max(holding) if holding else None
        out[f"workers_{workers}"] = row
    return out


def process_model_rows(model: dict[str, Any]) -> list[tuple[str, str, str]]:
    echo = model["echo_unary"]
    rows = [
        (
            f"process model: bare echo, unary, {PROCESS_MODEL_CHANNELS} connections",
            f"{echo['calls_per_s']:.0f} calls/s",
            cpu_note(echo, "call"),
        )
    ]
    for key, row in model.items():
        if not key.startswith("workers_"):
            continue
        workers = int(key.removeprefix("workers_"))
        name = "one process" if workers == 0 else f"--workers {workers}"
        unary, batch = row["capture_unary"], row["capture_batch"]
        fan = row["fanout"][0]
        rows += [
            (
                f"{name}: CaptureError",
                f"{unary['calls_per_s']:.0f} errors/s",
                f"{row['unary_ratio']:.2f}× echo (target ≥ 0.7); p99 {unary['p99_ms']} ms; " + cpu_note(unary, "error"),
            ),
            (
                f"{name}: BatchCaptureErrors",
                f"{batch['errors_per_s']:.0f} errors/s",
                "target ≥ 20,000/s; " + cpu_note(batch, "error"),
            ),
            (
                f"{name}: fan-out 100 subs × 100/s",
                f"p99 {fan['p99_ms']} ms",
                f"p50 {fan['p50_ms']} ms (target p99 ≤ 50 ms); highest rate holding it: "
                f"{row['fanout_highest_rate_p99_under_50ms'] or 'none'} of {[f['rate_per_s'] for f in row['fanout']]}",
            ),
        ]
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'figure':>22}  notes")
    for name, figure, notes in rows:
        print(f"{name.ljust(width)}  {figure:>22}  {notes}")


def only_otlp(load_seconds: str) -> None:
    """The OTLP row beside BatchCaptureErrors, without the rest of the bench; results.json is left alone."""
    with (
        tempfile.TemporaryDirectory(prefix="errorreplay-bench-") as tmp,
        errorreplay_server(Path(tmp) / "otlp", ERRORREPLAY_ENRICHMENT="off") as address,
    ):
        batch, otlp = batch_and_otlp(address, load_seconds)
    row = ("BatchCaptureErrors (100 per call)", f"{batch['errors_per_s']:.0f} errors/s", cpu_note(batch, "error"))
    print_table([row, otlp_row(otlp, batch)])
    print(json.dumps({"capture_batch": batch, "otlp_export": otlp}))


def notify_rows(count: int) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Capture to delivered notification (bench/notify_latency.py), enrichment off and on."""
    result = python("bench.notify_latency", "--count", str(count))
    rows = [
        (
            f"capture -> notification delivered, enrichment {mode}",
            f"p50 {result[f'enrichment_{mode}']['p50_ms']} ms",
            f"p99 {result[f'enrichment_{mode}']['p99_ms']} ms over {count} new groups"
            + ("; waits for the context (100 ms backends)" if mode == "on" else ""),
        )
        for mode in ("off", "on")
    ]
    return result, rows


def jetstream_fanout(tmp_path: Path, seconds: float) -> dict[str, Any]:
    """100 subscribers spread over 2 replicas, 100 captures/s alternating between them, every
    message through one nats-server (JetStream) and every capture into one ArcadeDB (Bolt)."""
    from tests.bolt_server import start_arcadedb
    from tests.nats_server import NatsServer

    nats = NatsServer(tmp_path / "nats").start()
    bolt = start_arcadedb(tmp_path / "arcadedb")
    try:
        env = {
            "ERRORREPLAY_ENRICHMENT": "off",
            "ERRORREPLAY_STORE": "neo4j",
            "ERRORREPLAY_NEO4J_URI": bolt.uri,
            "ERRORREPLAY_NEO4J_USERNAME": bolt.username,
            "ERRORREPLAY_NEO4J_PASSWORD": bolt.password,
            "ERRORREPLAY_NEO4J_DATABASE": bolt.database,
            "ERRORREPLAY_NATS_URL": nats.url,
        }
        with (
            errorreplay_server(tmp_path / "r1", **env) as first,
            errorreplay_server(tmp_path / "r2", **env) as second,
        ):
            return python(
                "bench.fanout", "--target", f"{first},{second}", "--subscribers", "100", "--rate", "100",
                "--seconds", str(seconds),
            )  # fmt: skip
    finally:
        bolt.stop()
        nats.stop()


def delivered_note(fan: dict[str, Any]) -> str:
    note = f"p99 {fan['p99_ms']} ms; {fan['delivered_per_s']:.0f} msgs/s; "
    note += f"{fan['delivered']}/{fan['expected_deliveries']} delivered"
    dropped = fan["dropped_subscribers"]
    return note + (f", {dropped} subscribers dropped as too slow" if dropped else "")


def fanout_holds(fan: dict[str, Any]) -> bool:
    """The fan-out target held: p99 ≤ 50 ms with no subscriber dropped."""
    return fan["p99_ms"] <= 50 and not fan["dropped_subscribers"]


def jetstream_row(fan: dict[str, Any]) -> tuple[str, str, str]:
    return (
        "SubscribeErrors via JetStream, 100 subs over 2 replicas × 100/s",
        f"p50 {fan['p50_ms']} ms",
        delivered_note(fan),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["otlp", "notify", "jetstream", "workers"], help="run only these rows")
    args = parser.parse_args()
    quick = args.quick
    load_seconds = "4" if quick else "15"
    if args.only == "otlp":
        only_otlp(load_seconds)
        return
    notify_count = 100 if quick else 300
    if args.only == "notify":
        notify, notify_table = notify_rows(notify_count)
        print_table(notify_table)
        print(json.dumps({"notify_latency": notify}))
        return
    if args.only == "workers":
        with tempfile.TemporaryDirectory(prefix="errorreplay-bench-") as tmp:
            model = process_model(Path(tmp), load_seconds, 5 if quick else 10, quick)
        print_table(process_model_rows(model))
        print(json.dumps({"process_model": model}))
        return
    if args.only == "jetstream":
        with tempfile.TemporaryDirectory(prefix="errorreplay-bench-") as tmp:
            fan = jetstream_fanout(Path(tmp), 5 if quick else 10)
        print_table([jetstream_row(fan)])
        print(json.dumps({"fanout_jetstream": fan}))
        return
    sizes = [20_000] if quick else [100_000, 1_000_000]
    read_calls = "60" if quick else "500"
    results: dict[str, Any] = {"quick": quick, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows: list[tuple[str, str, str]] = []

    with tempfile.TemporaryDirectory(prefix="errorreplay-bench-") as tmp:
        tmp_path = Path(tmp)
        # 1-2. Unary capture and batch capture, against the bare echo in the same run, same load.
        unary_args = ("--duration", load_seconds)
        batch_args = ("--mode", "batch", *batch_load(load_seconds))
        with echo_server() as echo:
            results["echo_unary"] = load(echo, *unary_args)
            results["echo_batch"] = load(echo, *batch_args)
        with errorreplay_server(tmp_path / "capture-off", ERRORREPLAY_ENRICHMENT="off") as address:
            results["capture_unary"] = load(address, *unary_args)
            results["capture_batch"], results["otlp_export"] = batch_and_otlp(address, load_seconds)
        with sentry_server(tmp_path / "sentry") as (address, url):
            results["sentry_envelopes"] = sentry_load(address, url, *unary_args)
        metrics_port = free_port()
        with (
            slow_backend() as backend,
            errorreplay_server(
                tmp_path / "capture-on",
                ERRORREPLAY_PROMETHEUS_URL=backend,
                ERRORREPLAY_LOKI_URL=backend,
                ERRORREPLAY_TEMPO_URL=backend,
                ERRORREPLAY_METRICS_PORT=str(metrics_port),
            ) as address,
        ):
            # Enrichment competes with capture for the same core: report the context it collected too.
            jobs_before = enrichment_completed(metrics_port)
            enriched = load(address, *unary_args)
            enriched["enrichment_jobs_per_s"] = round(
                (enrichment_completed(metrics_port) - jobs_before) / enriched["seconds"], 1
            )
            results["capture_unary_enriched"] = enriched
        unary_ratio = results["capture_unary"]["calls_per_s"] / results["echo_unary"]["calls_per_s"]
        batch_ratio = results["capture_batch"]["errors_per_s"] / results["echo_batch"]["errors_per_s"]
        results["capture_unary_ratio"] = round(unary_ratio, 3)
        results["capture_batch_ratio"] = round(batch_ratio, 3)
        rows += [
            (
                "bare echo, unary (64 in flight)",
                f"{results['echo_unary']['calls_per_s']:.0f} calls/s",
                f"p50 {results['echo_unary']['p50_ms']} ms, p99 {results['echo_unary']['p99_ms']} ms; "
                + cpu_note(results["echo_unary"], "call"),
            ),
            (
                "CaptureError (64 in flight)",
                f"{results['capture_unary']['calls_per_s']:.0f} errors/s",
                f"{unary_ratio:.2f}× echo (target ≥ 0.7); p50 {results['capture_unary']['p50_ms']} ms, "
                f"p99 {results['capture_unary']['p99_ms']} ms; " + cpu_note(results["capture_unary"], "call"),
            ),
            sentry_row(results["sentry_envelopes"], results["capture_unary"]),
            (
                "CaptureError, enrichment on (100 ms backends)",
                f"{results['capture_unary_enriched']['calls_per_s']:.0f} errors/s",
                f"p50 {results['capture_unary_enriched']['p50_ms']} ms, "
                f"p99 {results['capture_unary_enriched']['p99_ms']} ms; "
                f"{results['capture_unary_enriched']['enrichment_jobs_per_s']:.0f} contexts collected/s",
            ),
            (
                "bare echo, batch of 100",
                f"{results['echo_batch']['errors_per_s']:.0f} msgs/s",
                cpu_note(results["echo_batch"], "msg"),
            ),
            (
                "BatchCaptureErrors (100 per call)",
                f"{results['capture_batch']['errors_per_s']:.0f} errors/s",
                f"{batch_ratio:.2f}× echo (target ≥ 20,000 errors/s); " + cpu_note(results["capture_batch"], "error"),
            ),
            otlp_row(results["otlp_export"], results["capture_batch"]),
        ]

        # Where the batch path's CPU goes, stage by stage on one thread (the floor under the above).
        stages = results["capture_stages"] = python("bench.stages")
        rows.append(
            (
                "capture stages, one thread, no gRPC",
                f"{stages['total']:.0f} µs/error",
                f"to domain {stages['to domain']}, validate+scrub+fingerprint "
                f"{stages['validate, scrub, fingerprint']}, store {stages['store']}, response {stages['response']} µs",
            )
        )

        # The Python SDK's cost per capture_exception() on the application thread, server up and down.
        with errorreplay_server(tmp_path / "client-cost", ERRORREPLAY_ENRICHMENT="off") as address:
            client = results["client_cost"] = python("bench.client_cost", "--address", address)
        rows.append(
            (
                "client capture_exception(), app thread",
                f"{client['server_up']['cpu_mean_us']:.0f} µs up, {client['server_down']['cpu_mean_us']:.0f} µs down",
                f"CPU per call over {client['calls']:,} calls; wall p50 {client['server_up']['p50_us']} µs up, "
                f"{client['server_down']['p50_us']} µs down, p99 {client['server_up']['p99_us']} / "
                f"{client['server_down']['p99_us']} µs",
            )
        )

        RESULTS.write_text(json.dumps(results, indent=2))  # partial results survive a later failure

        # 3. Reads at scale, on a store seeded through the bulk path.
        for size in sizes:
            data_dir = tmp_path / f"seed-{size}"
            seeded = python("bench.seed", "--data-dir", str(data_dir), "--count", str(size), timeout=3600)
            bytes_without = db_bytes(data_dir)
            with errorreplay_server(data_dir) as address:
                reads = python("bench.reads", "--target", address, "--calls", read_calls)
            key = f"reads_{size}"
            results[key] = {**reads, "seed": seeded, "bytes_per_error": round(bytes_without / size)}
            for name, label, target in (
                ("get_error", "GetError", ""),
                ("replay_error", "ReplayError", " (target p99 ≤ 25 ms)"),
                ("search_errors", "SearchErrors, filtered", " (target p99 ≤ 25 ms)"),
                ("statistics_24h", "GetStatistics, 24 h", " (target ≤ 100 ms)"),
            ):
                r = reads[name]
                rows.append((f"{label} @ {size:,}", f"p50 {r['p50_ms']} ms", f"p99 {r['p99_ms']} ms{target}"))
            if size == sizes[0]:
                # The same reads from the workers of `serve --workers 2`, on their read-only connections.
                with errorreplay_server(data_dir, 2) as address:
                    worker_reads = python("bench.reads", "--target", address, "--calls", read_calls)
                results[f"{key}_workers_2"] = worker_reads
                for name, label in (("search_errors", "SearchErrors"), ("statistics_24h", "GetStatistics, 24 h")):
                    r = worker_reads[name]
                    rows.append(
                        (
                            f"--workers 2: {label} @ {size:,}",
                            f"p50 {r['p50_ms']} ms",
                            f"p99 {r['p99_ms']} ms (one process: p99 {reads[name]['p99_ms']} ms)",
                        )
                    )
            rows.append(
                (f"bytes per error @ {size:,}", f"{bytes_without / size:.0f} B", "before context (target ≤ 4 KB)")
            )
            rows.append(
                (
                    f"seeding {size:,} (store bulk path)",
                    f"{seeded['seconds']} s",
                    f"{size / max(seeded['seconds'], 0.001):.0f} errors/s",
                )
            )

        RESULTS.write_text(json.dumps(results, indent=2))

        # 4. Fan-out: 100 subscribers at 100 captures/s, then higher rates to find the highest
        # that holds p99 ≤ 50 ms.
        fan_seconds = 5 if quick else 10
        results["fanout"] = []
        with errorreplay_server(tmp_path / "fanout", ERRORREPLAY_ENRICHMENT="off") as address:
            for rate in (100,) if quick else (100, 125, 150, 200):
                fan = python(
                    "bench.fanout", "--target", address, "--subscribers", "100", "--rate", str(rate),
                    "--seconds", str(fan_seconds),
                )  # fmt: skip
                results["fanout"].append(fan)
                rows.append(
                    (
                        f"SubscribeErrors 100 subs × {rate}/s",
                        f"p50 {fan['p50_ms']} ms",
                        delivered_note(fan) + " (target p99 ≤ 50 ms @ 100/s)",
                    )
                )
        holding = [f["rate_per_s"] for f in results["fanout"] if fanout_holds(f)]
        results["fanout_highest_rate_p99_under_50ms"] = max(holding) if holding else None
        rows.append(
            ("highest fan-out rate with p99 ≤ 50 ms", f"{max(holding) if holding else 'none'}/s", "of those tried")
        )

        # 4b. The process model: one process against serve --workers N, same load, same run.
        results["process_model"] = process_model(tmp_path, load_seconds, fan_seconds, quick)
        rows += process_model_rows(results["process_model"])
        RESULTS.write_text(json.dumps(results, indent=2))

        # 5. Web console pages, timed from a client (an upper bound on the server-side render).
        console_count = 20_000 if quick else 100_000
        console = results["console"] = python(
            "bench.console", "--data-dir", str(tmp_path / "console"), "--count", str(console_count),
            "--calls", "20" if quick else "40",
        )  # fmt: skip
        for page in ("groups", "groups_filtered", "replay", "live", "statistics_24h", "statistics_cold"):
            rows.append(
                (
                    f"console {page} @ {console_count:,}",
                    f"p50 {console[page]['p50_ms']} ms",
                    f"p99 {console[page]['p99_ms']} ms (target ≤ 100 ms; client-timed)",
                )
            )

        # 6. The same fan-out through NATS JetStream: two replicas on one Bolt server (ArcadeDB).
        results["fanout_jetstream"] = jetstream_fanout(tmp_path / "jetstream", fan_seconds)
        rows.append(jetstream_row(results["fanout_jetstream"]))

    # 7. Capture to delivered notification, enrichment off and on.
    results["notify_latency"], notify_table = notify_rows(notify_count)
    rows += notify_table

    results["table"] = rows
    RESULTS.write_text(json.dumps(results, indent=2))
    print_table(rows)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
