// The SDK's context and filters against a running server: beforeSend drops and
// changes reports, breadcrumbs go with the next report, tags come from init.
//
//   node dist/test/sdk_context.js HOST:PORT SERVICE
//
// Prints `ids <kept-id> <dropped-id-or-empty>` and `flushed <true|false>`.
import { addBreadcrumb, captureException, captureMessage, flush, init } from "../src/index.js";
import type { ErrorReport } from "../src/index.js";

const [address, service] = process.argv.slice(2);
if (address === undefined || service === undefined) {
  console.error("usage: node dist/test/sdk_context.js HOST:PORT SERVICE");
  process.exit(2);
}

init({
  address,
  service,
  release: "3.1.0",
  environment: "staging",
  tags: { team: "payments", customer: "alice" },
  defaultIntegrations: false,
  beforeSend: (report: ErrorReport) => {
    if (report.message.includes("healthcheck")) return null;
    report.tags.customer = "[removed]";
    return report;
  },
});

addBreadcrumb("cart loaded");
addBreadcrumb("calling bank with password=hunter2secret", "WARN");
const dropped = captureMessage("healthcheck failed");
let kept = "";
try {
  JSON.parse("{not json");
} catch (err) {
  kept = captureException(err);
}
console.log(`ids ${kept} ${dropped}`);
console.log(`flushed ${await flush(30_000)}`);
