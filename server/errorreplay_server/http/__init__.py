"""The HTTP listener: Sentry ingestion, the Alertmanager webhook and /healthz (aiohttp, in the
server's event loop). Adapters in ../ingest map the payloads; every capture goes through DataPlane."""
