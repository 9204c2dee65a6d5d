// Captures one error and prints the error_id the server assigned.
//
//   make build && node dist/examples/capture.js 127.0.0.1:50051
//
// Without an argument it connects to $ERRORREPLAY_ADDRESS, as the CLI and the SDK do.
// ERRORREPLAY_TOKEN, when set, is sent as a bearer token.
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  createErrorReplayClient,
  ErrorReportSchema,
  Severity,
  Source,
} from "../src/index.js";

const address = process.argv[2] ?? process.env.ERRORREPLAY_ADDRESS ?? "127.0.0.1:50051";
const client = createErrorReplayClient(address, {
  token: process.env.ERRORREPLAY_TOKEN,
  timeoutMs: 5_000,
});

const report = create(ErrorReportSchema, {
  message: "payment provider timed out after 3 retries",
  severity: Severity.HIGH,
  source: Source.APPLICATION,
  service: "checkout",
  environment: "dev",
  errorType: "TimeoutError",
  resourceId: "checkout-api",
  occurredAt: timestampNow(),
  tags: { example: "capture.ts" },
});

try {
  const res = await client.errors.captureError({
    error: report,
    // A retry with the same request_id returns this result instead of storing twice.
    requestId: randomUUID(),
  });
  console.log(res.errorId);
} catch (err) {
  console.error(`capture failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  client.close();
}
