"""Security settings: bearer-token auth, TLS/mTLS, the per-caller rate limit and the stream cap.
All off by default but the stream cap, so a development server needs no configuration (README:
Security). A "caller" is the token when auth is on, and the client's address (no port) when off.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import model_validator

from errorreplay_server.grants import TokenGrant, parse_inline_tokens, parse_token_lines
from errorreplay_server.settings_types import Count, OptionalPath, SettingsModel, listed, setting


class SecuritySettings(SettingsModel):
    """Auth, TLS and per-caller limits. The defaults give an open, plaintext server with a stream cap."""

    # Grants from the file and inline add up (`grants`; formats: grants.py); none: auth is off.
    file_tokens: Annotated[tuple[TokenGrant, ...], listed(parse_token_lines, "token", in_file=True)] = setting(
        (), "AUTH_TOKENS_FILE", "file of `role token` lines; auth is on when set", show_raw=True
    )
    tokens: Annotated[tuple[TokenGrant, ...], listed(parse_inline_tokens, "token")] = setting(
        (), "AUTH_TOKENS", "inline grants `role:token,...`", show_raw=True, secret=True
    )
    tls_cert_file: OptionalPath = setting(None, "TLS_CERT_FILE", "PEM certificate chain; TLS is on when set")
    tls_key_file: OptionalPath = setting(None, "TLS_KEY_FILE", "PEM private key of that certificate")
    tls_client_ca_file: OptionalPath = setting(None, "TLS_CLIENT_CA_FILE", "PEM CA bundle; set means mTLS")
    rate_limit_per_second: float = setting(0.0, "RATE_LIMIT_PER_SECOND", "calls per second per caller (0 = off)", ge=0)
    rate_limit_burst: Count = setting(0, "RATE_LIMIT_BURST", "bucket size (0 = the rate rounded up)")
    max_streams_per_token: Count = setting(100, "MAX_STREAMS_PER_TOKEN", "streams per caller (0 = no cap)")

    @model_validator(mode="after")
    def _tls_files_pair(self) -> SecuritySettings:
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("ERRORREPLAY_TLS_KEY_FILE is set without ERRORREPLAY_TLS_CERT_FILE")
        if self.tls_cert_file is not None and self.tls_key_file is None:
            raise ValueError("ERRORREPLAY_TLS_CERT_FILE is set without ERRORREPLAY_TLS_KEY_FILE")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("ERRORREPLAY_TLS_CLIENT_CA_FILE (mTLS) needs ERRORREPLAY_TLS_CERT_FILE and _KEY_FILE")
        return self

    @property
    def grants(self) -> tuple[TokenGrant, ...]:
        return self.file_tokens + self.tokens

    @property
    def auth_enabled(self) -> bool:
        return bool(self.grants)

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def mtls_enabled(self) -> bool:
        return self.tls_client_ca_file is not None

    @property
    def rate_limit_enabled(self) -> bool:
        return self.rate_limit_per_second > 0

    @property
    def effective_burst(self) -> int:
        if self.rate_limit_burst:
            return self.rate_limit_burst
        return max(1, math.ceil(self.rate_limit_per_second))

    def describe(self) -> str:
        """One line for the start-up log; it names roles and counts, never a token or a key."""
        tls = "mtls" if self.mtls_enabled else "on" if self.tls_enabled else "off"
        if self.auth_enabled:
            distinct = {grant.token for grant in self.grants}
            roles = ", ".join(f"{role}" for role in sorted({grant.role for grant in self.grants}))
            auth = f"on ({len(distinct)} tokens; roles {roles})"
        else:
            auth = "off"
        rate = f"{self.rate_limit_per_second:g}/s burst {self.effective_burst}" if self.rate_limit_enabled else "off"
        streams = self.max_streams_per_token or "unlimited"
        return f"tls={tls} auth={auth} rate_limit={rate} max_streams_per_caller={streams}"
