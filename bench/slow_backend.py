"""A fake Prometheus/Loki/Tempo that answers every query after a fixed delay (default 100 ms)."""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler(delay: float) -> type[BaseHTTPRequestHandler]:
    class Slow(BaseHTTPRequestHandler):
        # Keep-alive, as the real backends do; HTTP/1.0 made every query a new connection.
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            time.sleep(delay)
            if self.path.startswith("/api/v1/query_range"):
                body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
            elif self.path.startswith("/loki/api/v1/query_range"):
                body = {"status": "success", "data": {"resultType": "streams", "result": []}}
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Slow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.delay))
    # Clients that hang up (the server shutting down, a collector timing out) are not news here.
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    server.daemon_threads = True
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
