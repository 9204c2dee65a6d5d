"""The Python SDK's cost to the application: µs per `errorreplay.capture_exception()` call on the
calling thread, inside `except`, with the server up and with the server down (nothing listening).

`cpu_mean_us` is the calling thread's CPU time per call (what the call costs the application);
the wall-clock figures add the waits for the GIL (the worker sending) and for a core (a busy machine).

    python -m bench.client_cost --address 127.0.0.1:50051 [--calls 20000]

The background worker runs meanwhile, as in an application (with the server up it sends, and takes
the GIL for it). The queue holds every call, so each one does the full work (no cheap drops).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time

import errorreplay


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def fail(i: int) -> None:
    raise ConnectionError(f"payment provider refused request {i}")


def measure(address: str, calls: int) -> dict[str, float]:
    errorreplay.init(
        address, service="bench-client", release="1.0", queue_size=calls, default_integrations=False, max_backoff=1.0
    )
    errorreplay.add_breadcrumb("checkout started")
    samples = []
    cpu = []
    for i in range(calls):
        try:
            fail(i)
        except ConnectionError:
            started, cpu_started = time.perf_counter_ns(), time.thread_time_ns()
            errorreplay.capture_exception()
            cpu.append(time.thread_time_ns() - cpu_started)
            samples.append(time.perf_counter_ns() - started)
    stats = errorreplay.stats()
    flushed = errorreplay.flush(timeout=60)
    errorreplay.close(timeout=1)
    samples.sort()
    return {
        "cpu_mean_us": round(statistics.fmean(cpu) / 1000, 1),
        "mean_us": round(statistics.fmean(samples) / 1000, 1),
        "p50_us": round(samples[len(samples) // 2] / 1000, 1),
        "p99_us": round(samples[int(len(samples) * 0.99)] / 1000, 1),
        "max_us": round(samples[-1] / 1000, 1),
        "dropped": stats.dropped_queue_full if stats else 0,
        "flushed": flushed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True, help="a running errorreplay server")
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    up = measure(args.address, args.calls)
    down = measure(free_address(), args.calls)
    print(json.dumps({"calls": args.calls, "server_up": up, "server_down": down}))


if __name__ == "__main__":
    main()
