export * from "./client.js";
export * from "./gen/errorreplay/v1/message_pb.js";
export * from "./gen/errorreplay/v1/request_response_pb.js";
export * from "./gen/errorreplay/v1/service_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
export type { CallOptions, Client, Interceptor, Transport } from "@connectrpc/connect";
export * from "./sdk.js";
