"""Format adapters: foreign payloads (Sentry events, Alertmanager notifications) onto ErrorReport.

Each adapter is pure: bytes or JSON in, domain reports and stable request ids out. Validation,
scrubbing, fingerprinting, idempotency and storage stay in the one capture path
(capture/service.py)."""
