"""The `errorreplay` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from errorreplay_server.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    from errorreplay_server.server import serve

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"errorreplay: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(settings))
    except Exception as exc:  # start-up failures: one clear line, non-zero exit
        logging.getLogger("errorreplay").error("cannot start: %s", exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="errorreplay", description="A DVR for production errors.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC server (configured by ERRORREPLAY_* variables)")
    serve.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
