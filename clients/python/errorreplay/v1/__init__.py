"""Generated protobuf messages and gRPC stubs for errorreplay.v1 (make gen)."""
