"""Settings of the NATS JetStream bus (several replicas; README: Deployment across machines).

Everything here must be the same on every replica of a deployment, except nothing: the stream and
consumer names are shared state. The defaults run one replica against a local nats-server.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if not all(s.startswith(("nats://", "tls://")) for s in self.servers):
            raise ValueError(f"ERRORREPLAY_NATS_URL must be nats://host:port[,nats://...], got {self.url!r}")
        if self.stream_max_age_seconds <= 0 or self.stream_max_bytes <= 0:
            raise ValueError("ERRORREPLAY_NATS_STREAM_MAX_AGE_SECONDS and _MAX_BYTES must be positive")
        if self.job_ack_wait_seconds <= 0 or self.job_max_deliver < 2:
            raise ValueError("ERRORREPLAY_NATS_JOB_ACK_WAIT_SECONDS must be positive, _JOB_MAX_DELIVER at least 2")
