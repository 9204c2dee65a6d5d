"""Sentry DSN public keys: one allows ingestion into its project and nothing else. The key file
has `project key` lines; the inline list (ERRORREPLAY_SENTRY_KEYS) is `project:key,...`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SentryKey:
    project_id: str
    key: str = field(repr=False)

    def __post_init__(self) -> None:
        # Messages never quote the key: it is a credential.
        if not self.project_id.isdigit() or len(self.project_id) > 20:
            raise ValueError("a Sentry project id must be a number (the last part of the DSN)")
        if not self.key or not self.key.isascii() or not self.key.isalnum() or len(self.key) > 128:
            raise ValueError("a Sentry public key must be 1-128 ASCII letters and digits")


def parse_sentry_keys(items: Iterable[str], where: str, sep: str | None) -> list[SentryKey]:
    keys = []
    for number, item in enumerate(items, start=1):
        text = item.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(sep) if sep else text.split()
        if len(parts) != 2:
            raise ValueError(f"{where} item {number}: expected 'project{sep or ' '}key'")
        try:
            keys.append(SentryKey(parts[0].strip(), parts[1].strip()))
        except ValueError as exc:
            raise ValueError(f"{where} item {number}: {exc}") from None
    return keys


def parse_key_lines(text: str, where: str) -> list[SentryKey]:
    return parse_sentry_keys(text.splitlines(), where, None)


def parse_inline_keys(text: str, where: str) -> list[SentryKey]:
    return parse_sentry_keys(text.split(","), where, ":")
