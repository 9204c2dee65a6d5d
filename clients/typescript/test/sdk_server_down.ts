// The SDK while errorreplay is down: 1,000 captures neither throw nor block
// (each call's time is measured), then the queue is flushed once the server is up.
//
//   node dist/test/sdk_server_down.js HOST:PORT SERVICE
//
// Prints `captured <count> <slowest-ms>` after the captures (the driver then
// starts the server) and `flushed <true|false> <stats-json>` at the end.
import { performance } from "node:perf_hooks";
import { captureException, flush, init, stats } from "../src/index.js";

const [address, service] = process.argv.slice(2);
if (address === undefined || service === undefined) {
  console.error("usage: node dist/test/sdk_server_down.js HOST:PORT SERVICE");
  process.exit(2);
}

init({ address, service, release: "1.0.0", environment: "test", maxBackoffMs: 500, timeoutMs: 1000 });

let slowest = 0;
let ids = 0;
for (let i = 0; i < 1000; i++) {
  try {
    throw new Error(`payment gateway refused request ${i}`);
  } catch (err) {
    const started = performance.now();
    if (captureException(err) !== "") ids++;
    slowest = Math.max(slowest, performance.now() - started);
  }
}
console.log(`captured ${ids} ${slowest.toFixed(3)}`);
const flushed = await flush(60_000);
console.log(`flushed ${flushed} ${JSON.stringify(stats())}`);
