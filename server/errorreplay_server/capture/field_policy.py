"""What happens to each stored string field that a client sends: scrubbed or refused.

Every string a write RPC stores (CaptureError/BatchCaptureErrors, RecordChange, UpsertResources)
has one row in FIELD_POLICY, keyed by the protobuf field's full name:

- ``SCRUB``: free text. Secrets are masked in place (``[REDACTED:<kind>]``) and the rest is kept.
  Maps are scrubbed key and value, with a value masked whole under a key that names a secret.
- ``SET_BY_SERVER``: whatever the client sends is replaced (a breadcrumb's ``collector``).
- ``REFUSE``: an identifier. Errors, changes and resources are found, joined and correlated by
  these, so a masked id would silently break correlation (every leaked card number in a
  ``correlation_id`` would become the same ``[REDACTED:credit_card]``, joining unrelated errors).
  A value that holds a secret shape is refused with INVALID_ARGUMENT naming the field and the
  kind (never the value); the client fixes its id and nothing with the secret is stored.
  Only credentials are refused: personal data (ERRORREPLAY_SCRUB_PII) is masked in free text,
  but an id that is an email address, or a release such as ``pkg@1.0.0-beta.rc`` that looks like
  one, is kept, because refusing it would lose the error.

`tests/unit/test_field_policy.py` walks every string, map and Struct field of the write requests
by protobuf reflection and fails if one has no row, so a new field cannot be forgotten. README
(Security, Secret scrubbing) shows the same table.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final, Protocol, TypeVar

from errorreplay_server.capture.scrubbing import PII_KINDS
from errorreplay_server.domain.errors import FieldViolation


class Treatment(enum.Enum):
    SCRUB = "scrub"
    REFUSE = "refuse"
    # The client's value is never stored: the server sets the field itself.
    SET_BY_SERVER = "set by the server"


SCRUB: Final = Treatment.SCRUB
REFUSE: Final = Treatment.REFUSE
SET_BY_SERVER: Final = Treatment.SET_BY_SERVER

_V1: Final = "errorreplay.v1."

# The protobuf messages whose fields are stored, and the domain dataclass attribute of each field
# is the protobuf field's name (errorreplay_server/domain/model.py mirrors message.proto).
FIELD_POLICY: Final[Mapping[str, Treatment]] = {
    f"{_V1}{name}": treatment
    for name, treatment in (
        ("CaptureErrorRequest.request_id", REFUSE),
        ("ErrorReport.message", SCRUB),
        ("ErrorReport.resource_id", REFUSE),
        ("ErrorReport.resource_type", REFUSE),
        ("ErrorReport.service", REFUSE),
        ("ErrorReport.environment", REFUSE),
        ("ErrorReport.release", REFUSE),
        ("ErrorReport.error_type", REFUSE),
        ("ErrorReport.stack_trace", SCRUB),
        ("ErrorReport.correlation_id", REFUSE),
        ("ErrorReport.trace_id", REFUSE),
        ("ErrorReport.span_id", REFUSE),
        ("ErrorReport.tags", SCRUB),
        ("ErrorReport.attributes", SCRUB),
        ("ErrorReport.fingerprint", SCRUB),
        # ErrorReport.breadcrumbs: stored as the snapshot's first context log lines.
        ("LogLine.level", SCRUB),
        ("LogLine.message", SCRUB),
        ("LogLine.labels", SCRUB),
        ("LogLine.collector", SET_BY_SERVER),
        ("Change.change_id", REFUSE),
        ("Change.resource_id", REFUSE),
        ("Change.version", SCRUB),
        ("Change.description", SCRUB),
        ("Change.author", SCRUB),
        ("Change.metadata", SCRUB),
        ("Resource.id", REFUSE),
        ("Resource.type", SCRUB),
        ("Resource.name", SCRUB),
        ("Resource.labels", SCRUB),
        ("Dependency.dependent_id", REFUSE),
        ("Dependency.dependency_id", REFUSE),
    )
}


class PolicyScrubber(Protocol):
    def scrub_text(self, text: str) -> str: ...

    def scrub_tags(self, tags: Mapping[str, str]) -> dict[str, str]: ...

    def scrub_value(self, value: Any) -> Any: ...

    def secret_kinds(self, text: str) -> frozenset[str]: ...


T = TypeVar("T")


@functools.cache
def fields_of(message: str) -> tuple[tuple[str, Treatment], ...]:
    """(field name, treatment) for each row of one message, e.g. ``"ErrorReport"``."""
    prefix = f"{_V1}{message}."
    return tuple((name[len(prefix) :], t) for name, t in FIELD_POLICY.items() if name.startswith(prefix))


def _scrubbed(value: Any, scrubber: PolicyScrubber) -> Any:
    if isinstance(value, str):
        return scrubber.scrub_text(value) if value else value
    if isinstance(value, list):
        return [scrubber.scrub_text(v) for v in value]
    if isinstance(value, dict):
        if not value:
            return value
        if all(isinstance(v, str) for v in value.values()):
            return scrubber.scrub_tags(value)
        return scrubber.scrub_value(value)
    raise TypeError(f"no scrubbing for a {type(value).__name__}")


def refused(value: str, field: str, scrubber: PolicyScrubber) -> FieldViolation | None:
    """The violation for an identifier that holds a secret shape, else None. Never echoes it."""
    if not value:
        return None
    kinds_found = scrubber.secret_kinds(value) - PII_KINDS
    if not kinds_found:
        return None
    kinds = ", ".join(sorted(kinds_found))
    return FieldViolation(field, f"looks like it holds a secret ({kinds}); identifiers are refused rather than masked")


def apply(message: str, obj: T, scrubber: PolicyScrubber, prefix: str) -> tuple[T, list[FieldViolation]]:
    """`obj` (the domain form of `message`) with its SCRUB fields scrubbed, and a violation for
    each REFUSE field that holds a secret. `prefix` starts each violation's field path."""
    changes: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for name, treatment in fields_of(message):
        value = getattr(obj, name)
        if treatment is SCRUB:
            scrubbed = _scrubbed(value, scrubber)
            if scrubbed is not value:
                changes[name] = scrubbed
        elif treatment is REFUSE:
            violation = refused(value, f"{prefix}{name}", scrubber)
            if violation is not None:
                violations.append(violation)
    return (replace(obj, **changes) if changes else obj), violations  # type: ignore[type-var]
