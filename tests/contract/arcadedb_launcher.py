"""Runs an ArcadeDB server with its Bolt endpoint, in a process of its own, until SIGTERM.

    python tests/contract/arcadedb_launcher.py --root DIR --http-port P --bolt-port Q \\
        --password PW --database NAME

Why a separate process: arcadedb-embedded starts a JVM inside the Python process (JPype). A JVM
cannot be restarted once stopped, and it would share the test process's signals and memory; in
its own process the server can be killed and restarted (the outage tests do) and a crash there
cannot take pytest down.

Prints READY on stdout once the database exists and the Bolt listener is up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="directory for the databases and the logs")
    parser.add_argument("--http-port", required=True, type=int)
    parser.add_argument("--bolt-port", required=True, type=int)
    parser.add_argument("--password", required=True, help="the root user's password (at least 8 characters)")
    parser.add_argument("--database", required=True)
    parser.add_argument("--host", default="localhost", help="interface every listener binds to")
    # The package's default is 4g; a test server needs far less, and CI may run several at once.
    parser.add_argument("--heap", default="1g", help="the JVM's maximum heap (default 1g)")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    # ArcadeDB writes its application log and JVM crash files under ./log of the working
    # directory; keep them with the server's data rather than in the repository.
    os.chdir(root)
    os.environ.setdefault("ARCADEDB_JVM_ERROR_FILE", str(root / "log" / "hs_err_pid%p.log"))

    stop = threading.Event()
    # Installed before the JVM starts, so a SIGTERM during start-up is still seen here.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    import arcadedb_embedded

    server = arcadedb_embedded.ArcadeDBServer(
        root_path=str(root / "databases"),
        root_password=args.password,
        config={
            "host": args.host,
            "http_port": args.http_port,
            "server_plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            "bolt_port": args.bolt_port,
        },
        jvm_kwargs={"heap_size": args.heap},
    )
    server.start()
    try:
        server.create_database(args.database)
        print("READY", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    # The databases are closed by now, but the Bolt plugin leaves a non-daemon thread per client
    # connection still open, which would keep the JVM (and this process) alive until the client
    # hangs up. Nothing is left to flush, so leave without waiting for them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
