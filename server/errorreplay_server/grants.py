"""Bearer-token grants: the roles, what a token may contain, and the two ways grants are written.

Token file format: one grant per line, `role token`, separated by white space. Blank lines and lines
starting with `#` are ignored. Roles are `reader`, `writer` and `admin`. A token listed on several
lines (or in both sources) holds the union of its roles, so `reader` and `writer` lines for the same
token make a read-write client. Tokens are opaque: any printable ASCII without white space, commas
or colons (they travel in the `authorization: Bearer <token>` header). The inline form is
`role:token,role:token` (ERRORREPLAY_AUTH_TOKENS); security_settings.py reads both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

_FORBIDDEN_TOKEN_CHARS = frozenset(",:")


class Role(enum.StrEnum):
    """What a token may do. `admin` implies the others; `writer` and `reader` are independent."""

    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    role: Role
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_token(self.token)


def _check_token(token: str) -> None:
    # The messages never quote the token: it is a secret even when it is malformed.
    if not token:
        raise ValueError("an auth token is empty")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError("an auth token must be printable ASCII without white space")
    if _FORBIDDEN_TOKEN_CHARS & set(token):
        raise ValueError("an auth token must not contain ',' or ':'")


def _checked(token: str, where: str) -> str:
    try:
        _check_token(token)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return token


def _role(text: str, where: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        # Not quoted: with the columns swapped by mistake, the "role" is the token.
        raise ValueError(f"{where}: unknown role; use reader, writer or admin") from None


def parse_token_lines(text: str, where: str) -> list[TokenGrant]:
    """Grants from `role token` lines (the token file format)."""
    grants = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{where} line {number}: expected 'role token'")
        grants.append(
            TokenGrant(_role(parts[0], f"{where} line {number}"), _checked(parts[1], f"{where} line {number}"))
        )
    return grants


def parse_inline_tokens(text: str, where: str = "ERRORREPLAY_AUTH_TOKENS") -> list[TokenGrant]:
    """Grants from `role:token,role:token`."""
    grants = []
    for number, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        role, sep, token = item.partition(":")
        if not sep:
            raise ValueError(f"{where} item {number}: expected 'role:token'")
        grants.append(
            TokenGrant(_role(role, f"{where} item {number}"), _checked(token.strip(), f"{where} item {number}"))
        )
    return grants
