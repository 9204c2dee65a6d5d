// Interop check of the TypeScript client against a running errorreplay server.
//
//   make interop ADDR=127.0.0.1:50051
//   node dist/test/interop.js 127.0.0.1:50051
//
// Prints one line per step and ends with "interop: N passed, N failed"
// (", 1 skipped" is added when the server does not implement SubscribeErrors
// yet). Exits non-zero when any step fails. ERRORREPLAY_TOKEN, when set, is
// sent as a bearer token.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createErrorReplayClient,
  Severity,
  Source,
} from "../src/index.js";
import type { ErrorReportSchema, SubscribeErrorsResponse } from "../src/index.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

const SUBSCRIBE_WINDOW_MS = 10_000;
const SUBSCRIBE_COUNT = 3;
const SEARCH_WAIT_MS = 5_000;

class CheckFailed extends Error {}
class Skipped extends Error {}

function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new CheckFailed(message);
}

function show(v: unknown): string {
  return typeof v === "bigint" ? `${v}n` : JSON.stringify(v) ?? String(v);
}

function checkEq<T>(actual: T, expected: T, what: string): void {
  check(actual === expected, `${what}: got ${show(actual)}, want ${show(expected)}`);
}

function describe(err: unknown): string {
  if (err instanceof ConnectError) return `gRPC error ${Code[err.code]}: ${err.rawMessage}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

const address = process.argv[2] ?? process.env.ERRORREPLAY_ADDRESS;
if (address === undefined || address === "") {
  console.error("usage: node dist/test/interop.js HOST:PORT");
  process.exit(2);
}

const client = createErrorReplayClient(address, {
  token: process.env.ERRORREPLAY_TOKEN,
  timeoutMs: 10_000,
});
const run = randomUUID();
const tagKey = "interop";
const tagValue = `ts-${run.slice(0, 8)}`;

function report(correlationId: string, message: string): MessageInitShape<typeof ErrorReportSchema> {
  return {
    message,
    severity: Severity.HIGH,
    source: Source.APPLICATION,
    service: "interop-ts",
    environment: "test",
    errorType: "InteropError",
    correlationId,
    occurredAt: timestampNow(),
    tags: { [tagKey]: tagValue },
  };
}

// State that later steps read from the first capture.
interface Captured {
  errorId: string;
  requestId: string;
  correlationId: string;
  message: string;
}
let first: Captured | undefined;

function needFirst(): Captured {
  if (first === undefined) throw new CheckFailed("no error was captured in step capture");
  return first;
}

async function stepCapture(): Promise<string> {
  const correlationId = `interop-ts-${run}`;
  const requestId = `interop-ts-req-${run}`;
  const message = `interop-ts: upstream timed out (run ${run})`;
  const res = await client.errors.captureError({
    error: report(correlationId, message),
    requestId,
  });
  check(res.errorId !== "", "CaptureError returned an empty error_id");
  checkEq(res.duplicate, false, "duplicate of a first capture");
  first = { errorId: res.errorId, requestId, correlationId, message };
  return `error_id=${res.errorId}`;
}

async function stepDuplicate(): Promise<string> {
  const c = needFirst();
  const res = await client.errors.captureError({
    error: report(c.correlationId, c.message),
    requestId: c.requestId,
  });
  checkEq(res.duplicate, true, "duplicate of a capture with a seen request_id");
  checkEq(res.errorId, c.errorId, "error_id of the duplicate capture");
  return `duplicate=true error_id=${res.errorId}`;
}

async function stepGet(): Promise<string> {
  const c = needFirst();
  const res = await client.errors.getError({ errorId: c.errorId });
  const snap = res.error;
  check(snap !== undefined, "GetError returned no error snapshot");
  checkEq(snap.errorId, c.errorId, "GetError error_id");
  const r = snap.report;
  check(r !== undefined, "GetError snapshot has no report");
  checkEq(r.message, c.message, "GetError report.message");
  checkEq(r.severity, Severity.HIGH, "GetError report.severity");
  checkEq(r.source, Source.APPLICATION, "GetError report.source");
  checkEq(r.correlationId, c.correlationId, "GetError report.correlation_id");
  checkEq(r.tags[tagKey], tagValue, `GetError report.tags[${tagKey}]`);
  if (snap.requestId !== "") checkEq(snap.requestId, c.requestId, "GetError request_id");
  return `error_id=${snap.errorId}`;
}

async function stepSearch(): Promise<string> {
  const c = needFirst();
  const deadline = Date.now() + SEARCH_WAIT_MS;
  for (;;) {
    const res = await client.errors.searchErrors({
      filter: { correlationId: c.correlationId },
      pageSize: 10,
    });
    if (res.errors.length > 0 || Date.now() >= deadline) {
      const ids = res.errors.map((e) => e.errorId);
      checkEq(res.errors.length, 1, `SearchErrors hits for correlation_id (ids ${show(ids)})`);
      checkEq(ids[0], c.errorId, "SearchErrors error_id");
      if (res.totalSize !== 0n) checkEq(res.totalSize, 1n, "SearchErrors total_size");
      return `1 hit for correlation_id=${c.correlationId}`;
    }
    await sleep(200);
  }
}

async function stepTopology(): Promise<string> {
  const api = `interop-ts-api-${run}`;
  const db = `interop-ts-db-${run}`;
  const up = await client.topology.upsertResources({
    resources: [
      { id: api, type: "service", name: "interop api", labels: { [tagKey]: tagValue } },
      { id: db, type: "database", name: "interop db", labels: { [tagKey]: tagValue } },
    ],
    dependencies: [{ dependentId: api, dependencyId: db }],
  });
  checkEq(up.resourcesUpserted, 2, "UpsertResources resources_upserted");
  checkEq(up.dependenciesUpserted, 1, "UpsertResources dependencies_upserted");
  const res = await client.topology.getTopology({ resourceId: api, depth: 1 });
  const topo = res.topology;
  check(topo !== undefined, "GetTopology returned no topology");
  if (topo.rootResourceId !== "") checkEq(topo.rootResourceId, api, "GetTopology root_resource_id");
  const apiRes = topo.resources.find((r) => r.id === api);
  const dbRes = topo.resources.find((r) => r.id === db);
  check(apiRes !== undefined, `GetTopology resources lack ${api}`);
  check(dbRes !== undefined, `GetTopology resources lack ${db}`);
  checkEq(apiRes.type, "service", "GetTopology api type");
  checkEq(dbRes.type, "database", "GetTopology db type");
  checkEq(apiRes.name, "interop api", "GetTopology api name");
  checkEq(apiRes.labels[tagKey], tagValue, `GetTopology api labels[${tagKey}]`);
  const edge = topo.dependencies.find((d) => d.dependentId === api && d.dependencyId === db);
  check(
    edge !== undefined,
    `GetTopology dependencies lack ${api} -> ${db} (got ${show(topo.dependencies.map((d) => `${d.dependentId}->${d.dependencyId}`))})`,
  );
  return `${api} -> ${db}`;
}

async function stepSubscribe(): Promise<string> {
  const correlationId = `interop-ts-sub-${randomUUID()}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), SUBSCRIBE_WINDOW_MS);
  const got: SubscribeErrorsResponse[] = [];
  let heartbeats = 0;
  let markLive = () => {};
  const live = new Promise<"live">((resolve) => {
    markLive = () => resolve("live");
  });
  // The request goes out when iteration starts, so read in the background.
  const stream = client.errors.subscribeErrors(
    { filter: { correlationId }, heartbeatInterval: { seconds: 1n } },
    { signal: abort.signal },
  );
  const reader = (async () => {
    for await (const msg of stream) {
      markLive();
      if (msg.heartbeat) {
        heartbeats++;
        continue;
      }
      got.push(msg);
      if (got.length >= SUBSCRIBE_COUNT) break;
    }
  })();
  const ended: Promise<{ err: unknown } | "ended"> = reader.then(
    () => "ended" as const,
    (err: unknown) => ({ err }),
  );
  const failure = (r: { err: unknown }): Error => {
    if (r.err instanceof ConnectError && r.err.code === Code.Unimplemented) {
      return new Skipped("UNIMPLEMENTED");
    }
    if (abort.signal.aborted) {
      return new CheckFailed(
        `received ${got.length} of ${SUBSCRIBE_COUNT} errors within ${SUBSCRIBE_WINDOW_MS / 1000} s (${heartbeats} heartbeats)`,
      );
    }
    return new CheckFailed(`SubscribeErrors failed: ${describe(r.err)}`);
  };
  try {
    // Captures made before the server registers the subscription would be missed:
    // wait for the first heartbeat (proof that it is live), at most 1.5 s.
    const early = await Promise.race([live, ended, sleep(1_500, "grace" as const)]);
    if (early === "ended") throw new CheckFailed("SubscribeErrors ended before any error was captured");
    if (typeof early === "object") throw failure(early);

    const want: string[] = [];
    for (let i = 0; i < SUBSCRIBE_COUNT; i++) {
      const res = await client.errors.captureError({
        error: report(correlationId, `interop-ts: subscribed error ${i + 1} (run ${run})`),
        requestId: randomUUID(),
      });
      check(res.errorId !== "", `CaptureError ${i + 1} returned an empty error_id`);
      want.push(res.errorId);
    }
    const result = await ended;
    if (result !== "ended") throw failure(result);
    check(
      got.length >= SUBSCRIBE_COUNT,
      `SubscribeErrors ended after ${got.length} of ${SUBSCRIBE_COUNT} errors`,
    );
    const ids = got.map((m) => m.error?.errorId ?? "");
    for (const m of got) {
      checkEq(m.error?.report?.correlationId, correlationId, "streamed error correlation_id");
    }
    check(
      [...ids].sort().join(",") === [...want].sort().join(","),
      `streamed error ids ${show(ids)} differ from captured ${show(want)}`,
    );
    return `${got.length} errors streamed (${heartbeats} heartbeats)`;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

const steps: Array<[string, () => Promise<string>]> = [
  ["capture", stepCapture],
  ["capture-duplicate", stepDuplicate],
  ["get", stepGet],
  ["search", stepSearch],
  ["topology", stepTopology],
  ["subscribe", stepSubscribe],
];

let passed = 0;
let failed = 0;
let skipped = 0;
console.log(`interop: server ${address}, run ${run}`);
for (const [name, fn] of steps) {
  try {
    const detail = await fn();
    passed++;
    console.log(`ok   ${name}: ${detail}`);
  } catch (err) {
    if (err instanceof Skipped) {
      skipped++;
      console.log(`${name}: ${err.message} (skipped)`);
    } else {
      failed++;
      console.log(`FAIL ${name}: ${describe(err)}`);
    }
  }
}
client.close();
console.log(`interop: ${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
process.exitCode = failed > 0 ? 1 : 0;
