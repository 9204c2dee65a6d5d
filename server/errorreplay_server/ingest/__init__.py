"""Format adapters: foreign payloads (OTLP exports, Sentry events, Alertmanager notifications) onto
ErrorReport.

Each adapter is pure: bytes or messages in, domain reports and stable request ids out. Validation,
scrubbing, fingerprinting, idempotency and storage stay in the one capture path
(capture/service.py)."""
