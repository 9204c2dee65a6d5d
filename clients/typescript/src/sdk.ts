// The one-line set-up: `init({...})`, then `captureException(err)` in a catch block.
//
// Nothing here throws into the application or waits for the network on its
// behalf: a capture builds a report, runs `beforeSend` and the sample rate, and
// appends it to a bounded queue. One background loop sends the queue in batches
// through BatchCaptureErrors, with exponential backoff and jitter while the
// server is down (honouring a RetryInfo the server sends), and the same request
// ids on every attempt so a retry never stores twice. Reports are dropped, and
// counted in `stats()`, when the queue is full or a batch stays unsent for
// `giveUpAfterMs`. Every timer is unref'd: the SDK never keeps a process alive.
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createErrorReplayClient } from "./client.js";
import type { ErrorReplayClient } from "./client.js";
import {
  ErrorReportSchema,
  LogLineSchema,
  Severity,
  Source,
} from "./gen/errorreplay/v1/message_pb.js";
import type { ErrorReport, LogLine } from "./gen/errorreplay/v1/message_pb.js";
import { CaptureErrorRequestSchema } from "./gen/errorreplay/v1/request_response_pb.js";
import type { CaptureErrorRequest } from "./gen/errorreplay/v1/request_response_pb.js";

/** Called with each report before it is queued: return it (changed or not), or null to drop it. */
export type BeforeSend = (report: ErrorReport) => ErrorReport | null;

/** ErrorReport fields a capture may set (service, correlationId, tags, ...). */
export type ReportFields = Omit<MessageInitShape<typeof ErrorReportSchema>, "$typeName">;

export interface InitOptions {
  /** `host:port` or a URL. Env: ERRORREPLAY_ADDRESS. Without one the SDK is off (logged once). */
  address?: string;
  /** Env: ERRORREPLAY_SERVICE. */
  service?: string;
  /** Env: ERRORREPLAY_RELEASE. */
  release?: string;
  /** Env: ERRORREPLAY_ENVIRONMENT. */
  environment?: string;
  /** Defaults to the service. Env: ERRORREPLAY_RESOURCE_ID. */
  resourceId?: string;
  /** Sent as a bearer token. Env: ERRORREPLAY_TOKEN. */
  token?: string;
  /** The share of reports sent, 0 to 1 (default 1). Env: ERRORREPLAY_SAMPLE_RATE. */
  sampleRate?: number;
  /** Reports held while the server is slow or down (default 1000). Env: ERRORREPLAY_QUEUE_SIZE. */
  queueSize?: number;
  /** Reports per BatchCaptureErrors call (default 100). Env: ERRORREPLAY_BATCH_SIZE. */
  batchSize?: number;
  /** Deadline of one send attempt in ms (default 5000). Env: ERRORREPLAY_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Longest wait between attempts in ms (default 30000). Env: ERRORREPLAY_MAX_BACKOFF_MS. */
  maxBackoffMs?: number;
  /** A batch unsent after this many ms is dropped (default 600000). Env: ERRORREPLAY_GIVE_UP_AFTER_MS. */
  giveUpAfterMs?: number;
  /** How long the exit handlers wait for the queue, in ms (default 2000). Env: ERRORREPLAY_SHUTDOWN_TIMEOUT_MS. */
  shutdownTimeoutMs?: number;
  /** The last N breadcrumbs sent with each report (default 50). Env: ERRORREPLAY_BREADCRUMBS. */
  maxBreadcrumbs?: number;
  /** Tags on every report. Env: ERRORREPLAY_TAGS (`team=payments,region=eu`). */
  tags?: Record<string, string>;
  beforeSend?: BeforeSend;
  /** Install the uncaughtException / unhandledRejection handlers (default true). Env: ERRORREPLAY_DEFAULT_INTEGRATIONS. */
  defaultIntegrations?: boolean;
}

export interface TransportStats {
  queued: number;
  sent: number;
  droppedQueueFull: number;
  droppedGaveUp: number;
  /** Refused by the server (INVALID_ARGUMENT, UNAUTHENTICATED, ...). */
  droppedRejected: number;
  sampledOut: number;
  filteredOut: number;
}

type Resolved = Required<Omit<InitOptions, "beforeSend" | "token">> & {
  beforeSend?: BeforeSend;
  token?: string;
};

const RETRY_CODES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted]);

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  return Number.isFinite(value) ? value : fallback;
}

function envTags(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (raw ?? "").split(",")) {
    const at = part.indexOf("=");
    if (at > 0) out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return out;
}

/** The options given, then the ERRORREPLAY_* variables, then the defaults. */
export function resolveOptions(o: InitOptions = {}): Resolved {
  const env = process.env;
  const service = o.service ?? env.ERRORREPLAY_SERVICE ?? "";
  const integrations = env.ERRORREPLAY_DEFAULT_INTEGRATIONS;
  return {
    address: o.address ?? env.ERRORREPLAY_ADDRESS ?? "",
    service,
    release: o.release ?? env.ERRORREPLAY_RELEASE ?? "",
    environment: o.environment ?? env.ERRORREPLAY_ENVIRONMENT ?? "",
    resourceId: o.resourceId ?? env.ERRORREPLAY_RESOURCE_ID ?? service,
    token: o.token ?? env.ERRORREPLAY_TOKEN,
    sampleRate: o.sampleRate ?? envNumber("ERRORREPLAY_SAMPLE_RATE", 1),
    queueSize: o.queueSize ?? envNumber("ERRORREPLAY_QUEUE_SIZE", 1000),
    batchSize: o.batchSize ?? envNumber("ERRORREPLAY_BATCH_SIZE", 100),
    timeoutMs: o.timeoutMs ?? envNumber("ERRORREPLAY_TIMEOUT_MS", 5000),
    maxBackoffMs: o.maxBackoffMs ?? envNumber("ERRORREPLAY_MAX_BACKOFF_MS", 30_000),
    giveUpAfterMs: o.giveUpAfterMs ?? envNumber("ERRORREPLAY_GIVE_UP_AFTER_MS", 600_000),
    shutdownTimeoutMs: o.shutdownTimeoutMs ?? envNumber("ERRORREPLAY_SHUTDOWN_TIMEOUT_MS", 2000),
    maxBreadcrumbs: o.maxBreadcrumbs ?? envNumber("ERRORREPLAY_BREADCRUMBS", 50),
    tags: o.tags ?? envTags(env.ERRORREPLAY_TAGS),
    beforeSend: o.beforeSend,
    defaultIntegrations:
      o.defaultIntegrations ?? (integrations === undefined || !/^(0|false|no|off)$/i.test(integrations.trim())),
  };
}

/** Host, process and runtime, named as OpenTelemetry's resource conventions name them. */
export function runtimeTags(): Record<string, string> {
  return {
    "host.name": hostname(),
    "process.pid": String(process.pid),
    "process.runtime.name": "nodejs",
    "process.runtime.version": process.versions.node,
  };
}

/** The RetryInfo delay (ms) in a ConnectError's google.rpc details, if any. */
export function retryDelayMs(err: ConnectError): number | undefined {
  for (const detail of err.details) {
    if (!("type" in detail) || detail.type !== "google.rpc.RetryInfo") continue;
    // RetryInfo { google.protobuf.Duration retry_delay = 1; } read with protobuf-es's reader.
    const outer = new BinaryReader(detail.value);
    while (outer.pos < outer.len) {
      const [field, wireType] = outer.tag();
      if (field !== 1) {
        outer.skip(wireType);
        continue;
      }
      const inner = new BinaryReader(outer.bytes());
      let seconds = 0;
      let nanos = 0;
      while (inner.pos < inner.len) {
        const [f, w] = inner.tag();
        if (f === 1) seconds = Number(inner.int64());
        else if (f === 2) nanos = inner.int32();
        else inner.skip(w);
      }
      return seconds * 1000 + nanos / 1e6;
    }
  }
  return undefined;
}

function sleep(ms: number, wake: { cancel?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    wake.cancel = () => {
      clearTimeout(timer);
      resolve();
    };
  });
}

class Hub {
  readonly stats: TransportStats = {
    queued: 0,
    sent: 0,
    droppedQueueFull: 0,
    droppedGaveUp: 0,
    droppedRejected: 0,
    sampledOut: 0,
    filteredOut: 0,
  };
  readonly tags: Record<string, string>;
  private readonly queue: CaptureErrorRequest[] = [];
  private readonly breadcrumbs: LogLine[] = [];
  private readonly client: ErrorReplayClient;
  private inFlight = 0;
  private running = false;
  private closed = false;
  private closeDeadline = Infinity;
  private readonly wake: { cancel?: () => void } = {};
  private idleWaiters: Array<() => void> = [];
  private readonly logged = new Set<string>();
  readonly captured = new WeakSet<object>();

  constructor(readonly options: Resolved) {
    this.tags = { ...runtimeTags(), ...options.tags };
    this.client = createErrorReplayClient(options.address, {
      token: options.token,
      timeoutMs: options.timeoutMs,
      // The connection closes soon after it goes idle, so a finished app exits promptly.
      http2: { idleConnectionTimeoutMs: 5_000 },
    });
  }

  addBreadcrumb(message: string, level: string, labels: Record<string, string>): void {
    this.breadcrumbs.push(create(LogLineSchema, { message, level, labels, time: timestampNow() }));
    while (this.breadcrumbs.length > Math.max(this.options.maxBreadcrumbs, 0)) this.breadcrumbs.shift();
  }

  capture(init: ReportFields): string {
    const o = this.options;
    let report = create(ErrorReportSchema, init);
    report.service ||= o.service;
    report.release ||= o.release;
    report.environment ||= o.environment;
    report.resourceId ||= o.resourceId;
    if (report.source === Source.UNSPECIFIED) report.source = Source.APPLICATION;
    if (report.severity === Severity.UNSPECIFIED) report.severity = Severity.HIGH;
    report.occurredAt ??= timestampNow();
    for (const [key, value] of Object.entries(this.tags)) {
      if (!(key in report.tags)) report.tags[key] = value;
    }
    report.breadcrumbs.push(...this.breadcrumbs);
    if (o.sampleRate < 1 && Math.random() >= o.sampleRate) {
      this.stats.sampledOut++;
      return "";
    }
    if (o.beforeSend !== undefined) {
      let kept: ErrorReport | null;
      try {
        kept = o.beforeSend(report);
      } catch (err) {
        this.logOnce("before_send", `errorreplay: beforeSend threw; the report is dropped: ${String(err)}`);
        kept = null;
      }
      if (kept === null) {
        this.stats.filteredOut++;
        return "";
      }
      report = kept;
    }
    if (this.closed || this.queue.length >= o.queueSize) {
      this.stats.droppedQueueFull++;
      this.logOnce("queue_full", "errorreplay: the report queue is full; reports are dropped and counted");
      return "";
    }
    const requestId = randomUUID();
    this.queue.push(create(CaptureErrorRequestSchema, { error: report, requestId }));
    this.stats.queued++;
    this.kick();
    return requestId;
  }

  pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** True once everything queued so far is sent or dropped; false if `timeoutMs` passed first. */
  flush(timeoutMs: number): Promise<boolean> {
    if (this.pending() === 0) return Promise.resolve(true);
    this.wake.cancel?.(); // retry now rather than after the current backoff
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(done);
    });
  }

  async close(timeoutMs: number): Promise<boolean> {
    this.closeDeadline = Date.now() + timeoutMs;
    const flushed = await this.flush(timeoutMs);
    this.closed = true;
    this.wake.cancel?.();
    this.stats.droppedGaveUp += this.queue.length;
    this.queue.length = 0;
    this.client.close();
    return flushed;
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    void this.drain().finally(() => {
      this.running = false;
      if (this.queue.length > 0 && !this.closed) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const batch = this.queue.splice(0, Math.max(this.options.batchSize, 1));
      this.inFlight = batch.length;
      try {
        await this.send(batch);
      } catch (err) {
        this.stats.droppedGaveUp += batch.length;
        this.logOnce("unexpected", `errorreplay: unexpected error sending reports: ${String(err)}`);
      }
      this.inFlight = 0;
      if (this.queue.length === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private async send(batch: CaptureErrorRequest[]): Promise<void> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const timeoutMs = Math.max(Math.min(this.options.timeoutMs, this.closeDeadline - Date.now()), 50);
        const res = await this.client.errors.batchCaptureErrors({ requests: batch }, { timeoutMs });
        const rejected = res.results.filter((r) => r.error !== undefined);
        this.stats.sent += batch.length - rejected.length;
        this.stats.droppedRejected += rejected.length;
        if (rejected.length > 0) {
          this.logOnce("item_rejected", `errorreplay: the server refused a report: ${rejected[0]?.error?.message}`);
        }
        return;
      } catch (err) {
        const error = ConnectError.from(err);
        if (!RETRY_CODES.has(error.code)) {
          this.stats.droppedRejected += batch.length;
          this.logOnce(`refused:${error.code}`, `errorreplay: the server refused reports: ${error.message}`);
          return;
        }
        const ceiling = Math.min(this.options.maxBackoffMs, 500 * 2 ** (attempt - 1));
        const wait = Math.max(ceiling * (1 - 0.5 * Math.random()), retryDelayMs(error) ?? 0);
        const now = Date.now();
        if (this.closed || now + wait - started > this.options.giveUpAfterMs || now + wait > this.closeDeadline) {
          this.stats.droppedGaveUp += batch.length;
          this.logOnce("gave_up", `errorreplay: server unreachable (${Code[error.code]}); reports are dropped`);
          return;
        }
        await sleep(wait, this.wake);
      }
    }
  }

  logOnce(key: string, message: string): void {
    if (this.logged.has(key)) return;
    this.logged.add(key);
    console.warn(message);
  }
}

let hub: Hub | undefined;
let saidDisabled = false;
let handlersInstalled = false;

/**
 * Sets up the SDK for this process (a second call replaces the first). Every
 * option left out is read from its ERRORREPLAY_* variable. Without an address
 * the SDK is off: captures are no-ops, and this is logged once.
 */
export function init(options: InitOptions = {}): void {
  const resolved = resolveOptions(options);
  if (hub !== undefined) void hub.close(resolved.shutdownTimeoutMs);
  hub = undefined;
  if (resolved.address === "") {
    if (!saidDisabled) {
      saidDisabled = true;
      console.info("errorreplay: no address (init({address}) or ERRORREPLAY_ADDRESS); capturing is off");
    }
    return;
  }
  hub = new Hub(resolved);
  if (resolved.defaultIntegrations) installHandlers();
}

export function isEnabled(): boolean {
  return hub !== undefined;
}

function errorFields(err: unknown): ReportFields {
  if (err instanceof Error) {
    const name = err.name || err.constructor?.name || "Error";
    return { message: err.message || name, errorType: name, stackTrace: err.stack ?? "" };
  }
  const text = typeof err === "string" ? err : (() => {
    try {
      return JSON.stringify(err) ?? String(err);
    } catch {
      return String(err);
    }
  })();
  return { message: text || "non-Error value thrown", errorType: typeof err, stackTrace: new Error().stack ?? "" };
}

/**
 * Queues a report of `err` and returns its request id; "" when nothing was
 * queued (SDK off, sampled out, filtered, queue full). Never throws.
 */
export function captureException(err: unknown, fields: ReportFields = {}): string {
  const h = hub;
  if (h === undefined) return "";
  try {
    if (typeof err === "object" && err !== null) {
      if (h.captured.has(err)) return "";
      h.captured.add(err);
    }
    return h.capture({ ...errorFields(err), ...fields, tags: { ...fields.tags } });
  } catch (e) {
    h.logOnce("capture", `errorreplay: could not capture an exception: ${String(e)}`);
    return "";
  }
}

/** Queues a report without an exception; see captureException. */
export function captureMessage(message: string, fields: ReportFields = {}): string {
  const h = hub;
  if (h === undefined) return "";
  try {
    return h.capture({ severity: Severity.MEDIUM, stackTrace: new Error().stack ?? "", ...fields, message });
  } catch (e) {
    h.logOnce("capture", `errorreplay: could not capture a message: ${String(e)}`);
    return "";
  }
}

/** Remembers a line that the next reports carry as context logs (the last `maxBreadcrumbs`). */
export function addBreadcrumb(message: string, level = "INFO", labels: Record<string, string> = {}): void {
  hub?.addBreadcrumb(message, level, labels);
}

/** Waits up to `timeoutMs` for the queue to be sent; false if reports are still queued. */
export function flush(timeoutMs = 2000): Promise<boolean> {
  return hub === undefined ? Promise.resolve(true) : hub.flush(timeoutMs);
}

/** Flushes for at most `timeoutMs` (default: shutdownTimeoutMs) and shuts the SDK down. */
export async function close(timeoutMs?: number): Promise<boolean> {
  const h = hub;
  hub = undefined;
  return h === undefined ? true : h.close(timeoutMs ?? h.options.shutdownTimeoutMs);
}

/** The transport's counters, or undefined when the SDK is off. */
export function stats(): TransportStats | undefined {
  return hub === undefined ? undefined : { ...hub.stats };
}

function unhandledRejectionsMode(): string {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  const flag = flags.find((f) => f.startsWith("--unhandled-rejections="));
  return flag === undefined ? "throw" : flag.slice("--unhandled-rejections=".length);
}

/**
 * Installs `uncaughtException` and `unhandledRejection` handlers that capture,
 * flush for at most `shutdownTimeoutMs`, then keep Node's default behaviour:
 * when no other handler is registered, the error is rethrown with ours removed,
 * so Node prints it and exits with status 1 as it would have. A `beforeExit`
 * handler flushes what is still queued when the event loop empties.
 */
export function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;

  // Rejections rethrown below as uncaught exceptions: captured once already (primitives included).
  const rethrown = new Set<unknown>();

  const onUncaught = (err: unknown): void => {
    if (!rethrown.delete(err)) {
      captureException(err, { severity: Severity.CRITICAL, tags: { mechanism: "uncaughtException" } });
    }
    const others = process.listenerCount("uncaughtException") > 1;
    const timeout = hub?.options.shutdownTimeoutMs ?? 0;
    void flush(timeout).finally(() => {
      if (others) return; // the application handles it
      process.removeListener("uncaughtException", onUncaught);
      process.removeListener("unhandledRejection", onRejection);
      setImmediate(() => {
        throw err;
      });
    });
  };

  const onRejection = (reason: unknown): void => {
    captureException(reason, { severity: Severity.CRITICAL, tags: { mechanism: "unhandledRejection" } });
    const others = process.listenerCount("unhandledRejection") > 1;
    const mode = unhandledRejectionsMode();
    if (others || !(mode === "throw" || mode === "strict")) {
      if (mode === "warn" || mode === "warn-with-error-code") {
        console.warn("Unhandled promise rejection:", reason);
        if (mode === "warn-with-error-code") process.exitCode = 1;
      }
      return;
    }
    // Node's default ("throw"): the rejection becomes an uncaught exception, which onUncaught
    // flushes and rethrows (the report is already captured, so it is not sent twice).
    rethrown.add(reason);
    setImmediate(() => {
      throw reason;
    });
  };

  let flushedAtExit = false;
  const onBeforeExit = (): void => {
    if (flushedAtExit || hub === undefined || hub.pending() === 0) return;
    flushedAtExit = true;
    void flush(hub.options.shutdownTimeoutMs);
  };

  process.on("uncaughtException", onUncaught);
  process.on("unhandledRejection", onRejection);
  process.on("beforeExit", onBeforeExit);
}
