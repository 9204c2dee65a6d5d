"""The gRPC layer: servicers that translate, and the one place that maps errors to status codes."""
