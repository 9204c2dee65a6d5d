"""Settings of the NATS JetStream bus (several replicas; README: Deployment across machines).

Everything here must be the same on every replica of a deployment, except nothing: the stream and
consumer names are shared state. The defaults run one replica against a local nats-server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """ERRORREPLAY_NATS_*: off (the in-process hub and queue) unless `url` is set."""

    # nats://host:port, several separated by commas (a cluster). "" keeps everything in process.
    url: str = ""
    # The stream every committed capture is published to, and its subject prefix.
    stream: str = "ERRORREPLAY_ERRORS"
    subject_prefix: str = "errorreplay.errors"
    # Retention of that stream: messages older than max_age, or past max_bytes (oldest first),
    # are discarded; a cursor older than the oldest kept message is OUT_OF_RANGE.
    stream_max_age_seconds: float = 7 * 24 * 3600.0
    stream_max_bytes: int = 1024 * 1024 * 1024
    # Copies of each stream in a NATS cluster (1 on a single server, 3 in production).
    stream_replicas: int = 1
    # The work-queue stream of enrichment jobs and its durable consumer, shared by every replica.
    jobs_stream: str = "ERRORREPLAY_JOBS"
    jobs_subject: str = "errorreplay.jobs"
    jobs_consumer: str = "enrichment"
    # A job not acknowledged within this time (its replica died) is delivered again.
    job_ack_wait_seconds: float = 30.0
    # A job delivered this many times is marked FAILED("abandoned after N deliveries") instead.
    job_max_deliver: int = 5
    # Where a replica announces a finished job, so wait_for_context returns on every replica.
    done_subject: str = "errorreplay.jobs.done"

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.url.split(",") if s.strip()]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NatsSettings:
        d = cls()
        settings = cls(
            url=env.get("ERRORREPLAY_NATS_URL", "").strip(),
            stream=env.get("ERRORREPLAY_NATS_STREAM", "").strip() or d.stream,
            subject_prefix=env.get("ERRORREPLAY_NATS_SUBJECT_PREFIX", "").strip() or d.subject_prefix,
            stream_max_age_seconds=_float(env, "ERRORREPLAY_NATS_STREAM_MAX_AGE_SECONDS", d.stream_max_age_seconds),
            stream_max_bytes=_int(env, "ERRORREPLAY_NATS_STREAM_MAX_BYTES", d.stream_max_bytes),
            stream_replicas=_int(env, "ERRORREPLAY_NATS_STREAM_REPLICAS", d.stream_replicas),
            jobs_stream=env.get("ERRORREPLAY_NATS_JOBS_STREAM", "").strip() or d.jobs_stream,
            jobs_subject=env.get("ERRORREPLAY_NATS_JOBS_SUBJECT", "").strip() or d.jobs_subject,
            job_ack_wait_seconds=_float(env, "ERRORREPLAY_NATS_JOB_ACK_WAIT_SECONDS", d.job_ack_wait_seconds),
            job_max_deliver=_int(env, "ERRORREPLAY_NATS_JOB_MAX_DELIVER", d.job_max_deliver),
        )
        if settings.enabled:
            if not all(s.startswith(("nats://", "tls://")) for s in settings.servers):
                raise ValueError(f"ERRORREPLAY_NATS_URL must be nats://host:port[,nats://...], got {settings.url!r}")
            if settings.stream_max_age_seconds <= 0 or settings.stream_max_bytes <= 0:
                raise ValueError("ERRORREPLAY_NATS_STREAM_MAX_AGE_SECONDS and _MAX_BYTES must be positive")
            if settings.job_ack_wait_seconds <= 0 or settings.job_max_deliver < 2:
                raise ValueError("ERRORREPLAY_NATS_JOB_ACK_WAIT_SECONDS must be positive, _JOB_MAX_DELIVER at least 2")
        return settings
