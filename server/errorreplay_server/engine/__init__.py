"""The multi-process engine: one writer process, N gRPC worker processes, one supervisor
(docs/ARCHITECTURE.md §5)."""
