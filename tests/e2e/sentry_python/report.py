"""An application using the real sentry-sdk, unchanged but for its DSN (tests/e2e/test_sentry_python.py).

It logs a few lines (breadcrumbs), fails with a chained exception holding secrets in its value, a
local variable and the request URL, reports it, reports a message, flushes, and prints what the
SDK says it sent as JSON."""

import json
import logging
import sys

import sentry_sdk

dsn = sys.argv[1]
sentry_sdk.init(dsn=dsn, release="shop@1.4.2", environment="staging", server_name="web-7")
sentry_sdk.set_tag("service", "checkout")
sentry_sdk.set_tag("team", "payments")


def add_request(event, hint):
    event["request"] = {
        "url": "https://shop.example/api/pay",
        "method": "POST",
        "query_string": "order=17&api_key=abcd1234efgh5678",
    }
    return event


sentry_sdk.get_current_scope().add_event_processor(add_request)
log = logging.getLogger("shop.checkout")
logging.basicConfig(level=logging.INFO)
log.info("loading cart 17 for customer 5")
log.warning("payment provider answered slowly, retrying with password=hunter2hunter2")


def read_card(cart):
    return cart["card"]


def charge(cart):
    stripe_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"  # noqa: F841  (a frame variable the SDK sends)
    try:
        return read_card(cart)
    except KeyError as exc:
        raise RuntimeError("charge failed for cart 17: postgres://app:s3cretPw@db:5432/orders refused") from exc


try:
    charge({"items": 3})
except RuntimeError:
    exception_id = sentry_sdk.capture_exception()
message_id = sentry_sdk.capture_message("inventory low for sku 9", level="warning")
traceparent = sentry_sdk.get_traceparent() or ""
sentry_sdk.flush(timeout=20)
print(json.dumps({"exception_id": exception_id, "message_id": message_id, "traceparent": traceparent}))
