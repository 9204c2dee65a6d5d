// Hand-written helper around the generated errorreplay.v1 service descriptors.
import { createClient } from "@connectrpc/connect";
import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import {
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import type { Http2SessionOptions } from "@connectrpc/connect-node";
import {
  ErrorReplayService,
  TopologyService,
} from "./gen/errorreplay/v1/service_pb.js";

/** The default deadline of a unary call, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** A bearer token, or a function that returns one for each call (for refreshing tokens). */
export type TokenSource = string | (() => string | Promise<string>);

export interface ErrorReplayClientOptions {
  /**
   * Deadline of each unary call in milliseconds, unless the call passes its own
   * `timeoutMs`. Defaults to DEFAULT_TIMEOUT_MS; 0 means no deadline.
   */
  timeoutMs?: number;
  /**
   * Deadline of each streaming call (SubscribeErrors) in milliseconds, unless the
   * call passes its own `timeoutMs`. Defaults to none: a subscription lives until
   * it is aborted through its `signal` or the server ends it.
   */
  streamTimeoutMs?: number;
  /** When set, every call carries `authorization: Bearer <token>`. */
  token?: TokenSource;
  /** Further interceptors, run after the authorization one. */
  interceptors?: Interceptor[];
  /** HTTP/2 keep-alive settings (pingIntervalMs, idleConnectionTimeoutMs, ...). */
  http2?: Http2SessionOptions;
}

export interface ErrorReplayClient {
  /** errorreplay.v1.ErrorReplayService */
  errors: Client<typeof ErrorReplayService>;
  /** errorreplay.v1.TopologyService */
  topology: Client<typeof TopologyService>;
  /** The transport both clients share, for building further clients. */
  transport: Transport;
  /** Closes the HTTP/2 connection; calls still running fail. */
  close(): void;
}

/**
 * Turns `host:port` into `http://host:port`; a URL with a scheme is kept as it is
 * (`https://` uses TLS, `http://` plaintext HTTP/2 with prior knowledge).
 */
export function normalizeBaseUrl(baseUrl: string): string {
  const trimmed = baseUrl.trim();
  if (trimmed === "") {
    throw new Error("errorreplay: empty server address");
  }
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`;
}

/** An interceptor that sends `authorization: Bearer <token>` with every call. */
export function bearerTokenInterceptor(token: TokenSource): Interceptor {
  return (next) => async (req) => {
    const value = typeof token === "string" ? token : await token();
    if (value !== "") {
      req.header.set("authorization", `Bearer ${value}`);
    }
    return next(req);
  };
}

/**
 * Wraps a transport so that unary and streaming calls get separate default
 * deadlines: a long-lived subscription must not inherit the unary deadline.
 * A deadline of 0 or less means none.
 */
function withDefaultTimeouts(
  inner: Transport,
  unaryMs: number | undefined,
  streamMs: number | undefined,
): Transport {
  const pick = (callMs: number | undefined, defaultMs: number | undefined) => {
    const ms = callMs ?? defaultMs;
    return ms !== undefined && ms > 0 ? ms : undefined;
  };
  return {
    unary(method, signal, timeoutMs, header, input, contextValues) {
      return inner.unary(method, signal, pick(timeoutMs, unaryMs), header, input, contextValues);
    },
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return inner.stream(method, signal, pick(timeoutMs, streamMs), header, input, contextValues);
    },
  };
}

/**
 * Creates typed clients for ErrorReplayService and TopologyService that speak
 * gRPC over one HTTP/2 connection.
 *
 * @param baseUrl `host:port` (plaintext) or a URL such as `http://127.0.0.1:50051`.
 */
export function createErrorReplayClient(
  baseUrl: string,
  opts: ErrorReplayClientOptions = {},
): ErrorReplayClient {
  const url = normalizeBaseUrl(baseUrl);
  const sessionManager = new Http2SessionManager(url, opts.http2);
  const interceptors: Interceptor[] = [];
  if (opts.token !== undefined) {
    interceptors.push(bearerTokenInterceptor(opts.token));
  }
  interceptors.push(...(opts.interceptors ?? []));
  const grpc = createGrpcTransport({
    baseUrl: url,
    sessionManager,
    interceptors,
  });
  const transport = withDefaultTimeouts(
    grpc,
    opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    opts.streamTimeoutMs,
  );
  return {
    errors: createClient(ErrorReplayService, transport),
    topology: createClient(TopologyService, transport),
    transport,
    close: () => sessionManager.abort(),
  };
}
