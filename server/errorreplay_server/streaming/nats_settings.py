"""Settings of the NATS JetStream bus (several replicas; README: Deployment across machines). They
must be the same on every replica: the names are shared state. The defaults suit one local nats-server.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from errorreplay_server.settings_types import Count, Positive, Seconds, SettingsModel, setting


def _servers(url: str) -> str:
    if not all(s.strip().startswith(("nats://", "tls://")) for s in url.split(",") if s.strip()):
        raise ValueError(f'"{url}" is not nats://host:port[,nats://...]')
    return url


class NatsSettings(SettingsModel):
    """ERRORREPLAY_NATS_*: off (the in-process hub and queue) unless `url` is set."""

    url: Annotated[str, AfterValidator(_servers)] = setting(
        "", "NATS_URL", "nats://host:port[,...]; unset keeps streams and jobs in process"
    )
    stream: str = setting("ERRORREPLAY_ERRORS", "NATS_STREAM", "the JetStream stream of committed captures")
    subject_prefix: str = setting("errorreplay.errors", "NATS_SUBJECT_PREFIX", "subject prefix of that stream")
    # A cursor older than the oldest message kept is OUT_OF_RANGE.
    stream_max_age_seconds: Seconds = setting(
        7 * 24 * 3600.0, "NATS_STREAM_MAX_AGE_SECONDS", "stream retention by age", gt=0
    )
    stream_max_bytes: Positive = setting(1024 * 1024 * 1024, "NATS_STREAM_MAX_BYTES", "stream retention by size")
    stream_replicas: Count = setting(1, "NATS_STREAM_REPLICAS", "copies of each stream in a NATS cluster")
    jobs_stream: str = setting("ERRORREPLAY_JOBS", "NATS_JOBS_STREAM", "the work-queue stream of enrichment jobs")
    jobs_subject: str = setting("errorreplay.jobs", "NATS_JOBS_SUBJECT", "subject of enrichment jobs")
    jobs_consumer: str = setting("enrichment", "NATS_JOBS_CONSUMER", "durable consumer every replica pulls jobs from")
    job_ack_wait_seconds: Seconds = setting(
        30.0, "NATS_JOB_ACK_WAIT_SECONDS", "an unacknowledged job is redelivered", gt=0
    )
    # Then FAILED("abandoned after N deliveries").
    job_max_deliver: int = setting(5, "NATS_JOB_MAX_DELIVER", "deliveries before a job is marked FAILED", ge=2)
    done_subject: str = setting(
        "errorreplay.jobs.done", "NATS_DONE_SUBJECT", "where a replica announces a finished job"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.url.split(",") if s.strip()]
