"""The SDK in a small program: init once, log as usual, capture inside `except`, flush at the end.

    python clients/python/examples/sdk_example.py localhost:50051

Prints the request id of the captured error and the transport's counters.
"""

from __future__ import annotations

import logging
import sys

import errorreplay

log = logging.getLogger("checkout")


def charge(order_id: str) -> None:
    log.info("charging order %s", order_id)
    raise ConnectionError(f"payment provider unreachable for order {order_id}")


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "localhost:50051"
    logging.basicConfig(level=logging.INFO)
    errorreplay.init(address=address, service="checkout", release="1.4.2", environment="dev")
    log.info("checkout started")  # a breadcrumb: it goes with the next captured error
    try:
        charge("o-1001")
    except ConnectionError:
        request_id = errorreplay.capture_exception()
        print(request_id)
    sent = errorreplay.flush(timeout=5.0)
    print(f"flushed={sent} {errorreplay.stats()}")
    return 0 if sent else 1


if __name__ == "__main__":
    sys.exit(main())
