// An application using the real @sentry/node, unchanged but for its DSN (tests/e2e/test_sentry_node.py).
import * as Sentry from "@sentry/node";

const dsn = process.argv[2];
Sentry.init({ dsn, release: "storefront@2.0.1", environment: "production", serverName: "node-3" });
Sentry.setTag("service", "storefront");
Sentry.addBreadcrumb({ category: "cart", message: "added sku 9 to cart 17", level: "info" });
Sentry.addBreadcrumb({ category: "auth", message: "session refreshed with password=hunter2hunter2", level: "info" });

function parsePayment(text) {
  return JSON.parse(text);
}

function checkout() {
  try {
    return parsePayment("{not json");
  } catch (cause) {
    throw new Error("checkout failed: api_key=abcd1234efgh5678 was refused", { cause });
  }
}

let exceptionId = "";
try {
  checkout();
} catch (error) {
  exceptionId = Sentry.captureException(error);
}
const messageId = Sentry.captureMessage("storefront degraded: cart service slow", "warning");
const flushed = await Sentry.flush(20000);
process.stdout.write(JSON.stringify({ exceptionId, messageId, flushed }) + "\n");
