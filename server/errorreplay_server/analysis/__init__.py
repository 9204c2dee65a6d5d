"""Pure-domain analysis (docs/ARCHITECTURE.md §4): grouping, correlation, propagation, timeline, root cause and
recommendations. No gRPC, no store, no I/O: every function here is deterministic and tested."""
