"""Secret scrubbing (docs/ARCHITECTURE.md §4): mask values that look like secrets before anything is stored.

The capture path runs every stored field through one `SecretScrubber` as `field_policy.py` says:
free text is scrubbed, identifiers holding a secret are refused (`secret_kinds`); the collectors
run their log lines through it too. Emails and national ids (PII_PATTERNS) are masked unless
``ERRORREPLAY_SCRUB_PII=off``; where one overlaps a secret, the secret's mask wins. What it masks becomes
the literal ``[REDACTED:<kind>]``. Only the secret part is masked: ``password=hunter2`` becomes
``password=[REDACTED:password]``, and ``postgres://app:pw@db/x`` keeps its scheme, user and host.

Rules
-----
- A `SecretPattern` is a kind, a compiled regex, the group that holds the secret (``None`` for
  the whole match), optional prefilter `keywords` and an optional `validator` (the card pattern
  uses it for the Luhn check; Basic auth for "decodes to user:password").
- Every active pattern scans the text; the secret spans are merged: overlapping spans become one
  mask (so no part of either secret survives), labelled with the kind of the span that starts
  first, then the longer one, then the pattern listed first. Patterns are ordered from specific
  to generic, so ``token=ghp_...`` is masked as ``github_token``, not ``token``.
- Masking is deterministic (the mask depends on the kind only, never on the secret) and
  idempotent: scrubbing scrubbed text changes nothing.
- `scrub_value` walks dicts, lists, tuples and sets. A value whose dict key names a secret
  (``password``, ``db_password``, ``clientSecret``, ``X-Api-Key``, ``Authorization``, ...) is
  masked whole, whatever it holds, unless it is empty, ``None``, a boolean or a null word.
  Containers deeper than `MAX_SCRUB_DEPTH` are replaced by `DEPTH_LIMIT_MASK`, not walked.

Prefilter
---------
Each default pattern lists `keywords`: ASCII literals, at least one of which every match contains
(case-insensitively). A pattern runs only when one of its keywords occurs in ``text.lower()``;
most strings (tag values, most messages) skip most patterns, many skip all. This is safe by
construction: every default pattern is compiled with ``re.ASCII``, so a case-insensitive match is
made of ASCII letters whose lower case ``str.lower()`` reproduces, contiguously. `SecretPattern`
refuses keywords on a Unicode case-insensitive regex, where it would not hold ("ſ" matches "s").
A pattern without keywords always runs. The tests check that scrubbing with and without the
prefilter gives the same output.

Every default regex starts with its literal prefix (or a small character set) and puts its
"not in the middle of a word" lookbehind after it, which CPython's engine scans much faster than
a leading lookbehind. None has nested quantifiers, and a match can start only where a run of the
characters it takes starts, so a scan stays linear in the length of the text, hostile input
included (the tests feed it pathological strings).
Short strings (at most 256 characters) found clean are remembered, up to 4096 of them, so tag and
attribute values that repeat cost a dict lookup; the cache never holds a string with a secret.

Timing (CPython 3.11 on a shared 2-core VM, default patterns, best of 5; ad hoc, no timed test):
a 60-character message ~5-10 µs; a 10-entry tag dict ~80 µs the first time, ~7 µs repeated;
a 2 kB stack trace ~100 µs, ~350 µs when it holds a few secrets (text that changed is
scanned again); 100 kB ~5-10 ms. The keyword prefilter costs about 1 µs per distinct keyword
per 2 kB (87 keywords with PII on); each pattern it lets run costs 1-30 µs per 2 kB.

Configuration
-------------
`SecretScrubber.from_settings` uses (settings.py ScrubSettings; variables in settings_schema.py):

- ``ERRORREPLAY_SCRUB_EXTRA_PATTERNS``: the path of a UTF-8 file of extra patterns, one per line,
  ``<kind><TAB><regex>``. Blank lines and lines starting with ``#`` are skipped. If the regex has
  a group named ``secret`` only that group is masked, else the whole match. Flags go inline
  (``(?i)``). A kind is lower case: ``[a-z0-9][a-z0-9_.-]*``. A bad line raises ValueError
  naming the file and line. Extra patterns have no keywords, so they run on every string.
- ``ERRORREPLAY_SCRUB_DISABLED_KINDS``: comma-separated kinds to turn off (text patterns and dict
  key rules alike). An unknown kind raises ValueError, so a typo cannot pass unnoticed.
- ``ERRORREPLAY_SCRUB_PII``: ``on`` (default) or ``off``: whether emails and US social security
  numbers (kinds ``email``, ``national_id``) are masked too.

In code: ``SecretScrubber(extra_patterns=[...], disabled_kinds=[...])``, or pass ``patterns`` to
replace the defaults.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from errorreplay_server.settings import ScrubSettings

ENV_EXTRA_PATTERNS: Final = "ERRORREPLAY_SCRUB_EXTRA_PATTERNS"
ENV_DISABLED_KINDS: Final = "ERRORREPLAY_SCRUB_DISABLED_KINDS"
ENV_SCRUB_PII: Final = "ERRORREPLAY_SCRUB_PII"
# Emails and national ids are masked unless the operator turns it off: an error store is read by
# many people, and Sentry's default data scrubbing masks them too.
DEFAULT_SCRUB_PII: Final = True

# A container nested deeper than this many levels inside the value given to `scrub_value` is
# replaced by DEPTH_LIMIT_MASK instead of being walked (protobuf Struct allows ~100 levels).
MAX_SCRUB_DEPTH: Final = 32
DEPTH_LIMIT_KIND: Final = "max_depth"

# The group of an extra pattern (from the environment) that holds the secret, when present.
EXTRA_PATTERN_SECRET_GROUP: Final = "secret"

# Integers with at least this many digits may be card numbers, so scrub_value checks them.
_MIN_CARD_DIGITS: Final = 13
_MAX_CARD_DIGITS: Final = 19
_MIN_CARD_INT: Final = 10 ** (_MIN_CARD_DIGITS - 1)

# scrub_text remembers up to _CLEAN_CACHE_SIZE strings of at most _CLEAN_CACHE_MAX_LEN characters
# that held nothing to mask, and returns them at once next time (then starts the cache afresh).
_CLEAN_CACHE_MAX_LEN: Final = 16_384
_CLEAN_CACHE_SIZE: Final = 4096
# Stack traces repeat (one code path, many errors) and cost the most to scan, so long strings
# are cached too, within a budget of characters.
_CLEAN_CACHE_MAX_CHARS: Final = 4_000_000

# secret_kinds remembers clean identifiers up to this length (the default id limit).
_CLEAN_ID_MAX_LEN: Final = 256

# scrub_text scans text again after masking, until nothing changes, at most this many scans.
_MAX_PASSES: Final = 3

_KIND_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]*", re.ASCII)
_INLINE_IGNORECASE: Final = re.compile(r"\(\?[aiLmsux-]*i")
_NULL_WORDS: Final = frozenset({"null", "none", "nil", "undefined", "true", "false"})


def mask_for(kind: str) -> str:
    """The literal that replaces a secret of this kind."""
    return f"[REDACTED:{kind}]"


DEPTH_LIMIT_MASK: Final = mask_for(DEPTH_LIMIT_KIND)


@dataclass(frozen=True, slots=True)
class SecretPattern:
    """One secret shape.

    `group` names the regex group holding the secret (``None``: the whole match). `keywords` are
    lower-case ASCII literals, one of which every match contains case-insensitively; empty means
    the pattern always runs. `validator` gets the secret text and may reject it.
    """

    kind: str
    regex: re.Pattern[str]
    group: int | str | None = None
    keywords: tuple[str, ...] = ()
    validator: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        if isinstance(self.group, int) and not 0 <= self.group <= self.regex.groups:
            raise ValueError(f"pattern {self.kind!r}: no group {self.group}")
        if isinstance(self.group, str) and self.group not in self.regex.groupindex:
            raise ValueError(f"pattern {self.kind!r}: no group named {self.group!r}")
        _check_keywords(self.kind, self.keywords, self.regex)


@dataclass(frozen=True, slots=True)
class SecretKeyRule:
    """A dict key that names a secret: `scrub_value` masks the whole value under a matching key.

    `key` is searched in the key. A value that `keep_value` matches (at its start) is kept.
    `keywords` prefilter the key as they do the text for a `SecretPattern`.
    """

    kind: str
    key: re.Pattern[str]
    keep_value: re.Pattern[str] | None = None
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        _check_keywords(self.kind, self.keywords, self.key)


class Redaction(NamedTuple):
    start: int
    end: int
    kind: str


def _check_kind(kind: str) -> None:
    if not _KIND_RE.fullmatch(kind):
        raise ValueError(f"secret kind {kind!r} must match {_KIND_RE.pattern}")


def _check_keywords(kind: str, keywords: tuple[str, ...], regex: re.Pattern[str]) -> None:
    for keyword in keywords:
        if not keyword or not keyword.isascii() or keyword != keyword.lower():
            raise ValueError(f"{kind!r}: keyword {keyword!r} must be lower-case ASCII")
    # Unicode case folding would let a match dodge the prefilter ("ſ" matches "s" under re.I).
    case_insensitive = regex.flags & re.IGNORECASE or _INLINE_IGNORECASE.search(regex.pattern)
    if keywords and case_insensitive and not regex.flags & re.ASCII:
        raise ValueError(f"{kind!r}: keywords need re.ASCII on a case-insensitive regex")


# --- validators -------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    """13 to 19 digits (spaces, dashes and dots ignored), a card network prefix, and a valid Luhn sum.

    Prefixes: 2221-2720 (Mastercard 2-series, checked as 22-27), 3 (Amex, Diners, JCB), 4 (Visa),
    5 (Mastercard, Maestro), 6 (Discover, UnionPay, Maestro). Timestamps and snowflake ids start
    with 1 today, so the prefix rule keeps them out even when their checksum happens to pass.
    """
    digits = text.replace(" ", "").replace("-", "").replace(".", "")
    if not (_MIN_CARD_DIGITS <= len(digits) <= _MAX_CARD_DIGITS) or not (digits.isascii() and digits.isdigit()):
        return False
    first = digits[0]
    if first == "2":
        if not "22" <= digits[:2] <= "27":
            return False
    elif first not in "3456":
        return False
    return luhn_ok(digits)


def is_basic_credentials(token: str) -> bool:
    """Whether a Basic auth token decodes to printable ``user:password``."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return len(decoded) >= 2 and ":" in decoded and decoded.isprintable()


# --- default patterns -------------------------------------------------------------------------
#
# Speed: CPython's regex engine scans fast for a pattern that starts with a literal (or a small
# character set), and slowly for one that starts with a lookbehind. So each pattern starts with
# its literal prefix, and the "not in the middle of a word" lookbehind comes right after it:
# ``sk-(?<![A-Za-z0-9_-]sk-)`` rather than ``(?<![A-Za-z0-9_-])sk-``.

_A = re.ASCII

# Characters that end a bare (unquoted) value in key=value text.
_BARE_STOP = r"\s\"'\\&;,<>"


def _lit(literal: str, before: str) -> str:
    """`literal`, not preceded by a character of the class `before`."""
    lit = re.escape(literal)
    return f"{lit}(?<![{before}]{lit})"


@dataclass(frozen=True, slots=True)
class _KeyFamily:
    """Keys that name one kind of secret, split as first letter + rest so the regex starts with a
    character set. `rest` matches case-insensitively after a word start (``DB_PASSWORD``,
    ``x-api-key``); `camel_rest` case-sensitively after the upper-case letter that follows a
    lower-case letter or digit (``newPassword``)."""

    kind: str
    letter: str
    rest: str
    camel_rest: str
    keywords: tuple[str, ...]
    value_guard: str = ""  # a lookahead at the start of the value

    def key_regex(self) -> str:
        lo, up = self.letter, self.letter.upper()
        return (
            rf"[{lo}{up}](?P<dash>(?<=--[{lo}{up}])(?<![\w-]--[{lo}{up}]))?"
            rf"(?:(?<![A-Za-z0-9][{lo}{up}])(?i:{self.rest})|(?<=[a-z0-9]{up})(?:{self.camel_rest}))"
        )

    def whole_key_regex(self) -> str:
        lo, up = self.letter, self.letter.upper()
        return rf"(?:(?<![A-Za-z0-9])(?i:{lo}(?:{self.rest}))|(?<=[a-z0-9]){up}(?:{self.camel_rest}))\Z"


def _kv_regex(family: _KeyFamily) -> re.Pattern[str]:
    """``key=value``, ``key: value``, ``"key": "value"``, ``key => 'value'``, ``--key value``, and
    ``key == "value"`` (source lines in stack traces compare with hard-coded secrets too).

    The value may be double-, single- or escaped-quoted (``\\"``), or bare. A null word, an
    already masked value and an empty value are left alone.
    """
    return re.compile(
        family.key_regex() + r"\\?[\"']?"
        r"(?:[ \t]*(?:===?|=>|:=|:|=(?!=))[ \t]*|(?(dash)[ \t]+|(?!)))"
        r"(?P<q>\\?[\"'])?"
        r"(?!\[REDACTED:)"
        r"(?!(?i:null|none|nil|undefined|true|false)(?![A-Za-z0-9_]))"
        f"{family.value_guard}"
        rf"(?P<secret>(?(q)(?:(?!(?P=q))(?:\\.|[^\r\n\\]))+|[^{_BARE_STOP}]+))",
        _A,
    )


_KEY_FAMILIES: Final[tuple[_KeyFamily, ...]] = (
    _KeyFamily("aws_secret_access_key", "a", r"ws[_.-]?secret[_.-]?access[_.-]?key", r"wsSecretAccessKey", ("secret",)),
    _KeyFamily("aws_secret_access_key", "s", r"ecret[_.-]?access[_.-]?key", r"ecretAccessKey", ("secret",)),
    _KeyFamily(
        "datadog_api_key",
        "d",
        r"(?:d|atadog)[_.-]?(?:api|app|application)[_.-]?key",
        r"(?:d|atadog)(?:Api|App|Application)Key",
        ("dd", "datadog"),
    ),
    _KeyFamily("private_key", "p", r"rivate[_.-]?key", r"rivate[_-]?Key", ("private",)),
    # `pass` alone (``DB_PASS=``, ``pass=``) ends at the key, so ``passport=`` and ``bypass=`` stay.
    _KeyFamily(
        "password",
        "p",
        r"assword|asswd|assphrase|asscode|gpassword|ass(?![A-Za-z0-9])",
        r"assword|asswd|assphrase|asscode|ass(?![A-Za-z0-9])",
        ("pass",),
    ),
    # `PWD=/home/app` is the working directory, not a password.
    _KeyFamily("password", "p", r"wd", r"wd", ("pwd",), value_guard=r"(?![/~])"),
    _KeyFamily("password", "p", r"w(?![A-Za-z0-9])", r"w(?![A-Za-z0-9])", ("pw",)),
    _KeyFamily("credentials", "c", r"redentials?(?![A-Za-z0-9])", r"redentials?(?![A-Za-z0-9])", ("credential",)),
    _KeyFamily("secret", "s", r"ecret(?:[_.-]?key)?", r"ecret(?:Key)?", ("secret",)),
    _KeyFamily("secret", "c", r"lient[_.-]?secret", r"lientSecret", ("secret",)),
    _KeyFamily("token", "t", r"oken", r"oken", ("token",)),
    # Glued names: ``apitoken=``, ``accesstoken=`` (``access_token`` is caught by the row above).
    _KeyFamily("token", "a", r"(?:pi|ccess|uth)[_.-]?token", r"(?:pi|ccess|uth)Token", ("token",)),
    _KeyFamily("token", "r", r"efresh[_.-]?token", r"efreshToken", ("token",)),
    _KeyFamily("api_key", "a", r"pi[_.-]?key", r"pi[_-]?Key|PI[_-]?Key", ("apikey", "api_key", "api-key", "api.key")),
)


def _p(
    kind: str,
    regex: str,
    keywords: Iterable[str],
    *,
    group: int | str | None = None,
    validator: Callable[[str], bool] | None = None,
) -> SecretPattern:
    return SecretPattern(kind, re.compile(regex, _A), group, tuple(keywords), validator)


def _default_patterns() -> tuple[SecretPattern, ...]:
    pem_label = r"(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?"
    specific = [
        # PEM private keys: PKCS#1 RSA, EC, DSA, OpenSSH, PKCS#8 (plain and encrypted), PGP, SSH2.
        # The BEGIN/END lines stay; a key cut off before its END line is masked to the end. The
        # body starts as base64 or an RFC 1421 header ("Proc-Type: ..."), maybe after JSON-escaped
        # line breaks, so a mere mention of the BEGIN line is not taken for a key.
        _p(
            "private_key",
            rf"----[- ]BEGIN {pem_label}(?:-----| ----)\s*"
            r"(?=(?:\\[rn])*(?:[A-Za-z0-9+/=]{16}|[A-Za-z-]+:))(?P<secret>[\s\S]+?)\s*"
            rf"(?:----[- ]END {pem_label}(?:-----| ----)|\Z)",
            ["private key"],
            group="secret",
        ),
        # PuTTY .ppk: the lines after "Private-Lines: N", up to the next "Header:" line.
        _p(
            "private_key",
            r"Private-Lines:[ \t]*[0-9]+\r?\n"
            r"(?P<secret>[A-Za-z0-9+/=]+(?:\r?\n(?![A-Za-z-]+:)[A-Za-z0-9+/=]+)*)",
            ["private-lines"],
            group="secret",
        ),
        _p("jwt", _lit("eyJ", "A-Za-z0-9_-") + r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", ["eyj"]),
        _p(
            "aws_access_key_id",
            _lit("A", "A-Za-z0-9") + r"(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])",
            ["akia", "asia", "abia", "acca"],
        ),
        # A secret access key (40 characters of base64 with upper and lower case letters) a little
        # after its access key id ("key AKIA... and secret wJalr..."): the pair is how they leak.
        _p(
            "aws_secret_access_key",
            _lit("A", "A-Za-z0-9") + r"(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])[^\r\n]{1,64}?"
            r"(?<![A-Za-z0-9/+=])(?P<secret>(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
            r"[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
            ["akia", "asia"],
            group="secret",
        ),
        # The same 40 characters after its labels, however they are separated (spaces, quotes, a
        # colon, an equals sign, a CLI flag): ``aws_secret_access_key wJalr...``.
        _p(
            "aws_secret_access_key",
            r"[AaSs](?<![A-Za-z0-9][AaSs])(?i:(?<=[Aa])ws[_.-]?secret[_.-]?access[_.-]?key|(?<=[Ss])ecret[_.-]?(?:access[_.-]?)?key)"
            r"[\s\"'\\:=,>]{1,8}(?P<secret>(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
            r"[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
            ["secret"],
            group="secret",
        ),
        _p(
            "aws_session_token",
            r"[FI](?<![A-Za-z0-9+/=][FI])(?:woGZXIvYXdz|QoJb3JpZ2luX2V[jc])[A-Za-z0-9+/=]{100,}",
            ["fwogzxivyxdz", "iqojb3jpz2lux2v"],
        ),
        _p("gcp_api_key", _lit("AIza", "A-Za-z0-9_-") + r"[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])", ["aiza"]),
        _p(
            "google_oauth_client_secret",
            _lit("GOCSPX-", "A-Za-z0-9_-") + r"[A-Za-z0-9_-]{28}(?![A-Za-z0-9_-])",
            ["gocspx-"],
        ),
        _p("google_oauth_token", _lit("ya29.", "A-Za-z0-9_.-") + r"[A-Za-z0-9_-]{20,}", ["ya29."]),
        _p(
            "github_token",
            _lit("gh", "A-Za-z0-9_") + r"[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])",
            ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        ),
        _p(
            "github_fine_grained_pat",
            _lit("github_pat_", "A-Za-z0-9_") + r"[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])",
            ["github_pat_"],
        ),
        _p(
            "gitlab_token",
            _lit("gl", "A-Za-z0-9_-") + r"(?:pat|ptt|dt|rt|soat|cbt)-[A-Za-z0-9_.-]{20,}",
            ["glpat-", "glptt-", "gldt-", "glrt-", "glsoat-", "glcbt-"],
        ),
        # Slack tokens carry numeric ids: "xoxo-hugs-and-kisses" is not one.
        _p(
            "slack_token",
            _lit("x", "A-Za-z0-9_-") + r"(?:ox[abposre]|app)-(?=[A-Za-z0-9-]{0,64}[0-9])[A-Za-z0-9-]{10,}",
            ["xox", "xapp-"],
        ),
        _p(
            "slack_webhook",
            r"[Hh](?i:ttps://hooks\.slack\.com/)(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/-]{8,})",
            ["hooks.slack.com"],
            group="secret",
        ),
        _p(
            "discord_webhook",
            r"[Hh](?i:ttps://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/)[0-9]{5,30}/"
            r"(?P<secret>[A-Za-z0-9_-]{20,})",
            ["discord"],
            group="secret",
        ),
        _p(
            "stripe_key",
            r"[sr]k_(?<![A-Za-z0-9_][sr]k_)(?:live|test)_[A-Za-z0-9]{10,247}(?![A-Za-z0-9_])",
            ["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
        ),
        _p("stripe_webhook_secret", _lit("whsec_", "A-Za-z0-9_") + r"[A-Za-z0-9+/=]{20,}", ["whsec_"]),
        _p("twilio_api_key", _lit("SK", "A-Za-z0-9") + r"[0-9a-f]{32}(?![A-Za-z0-9])", ["sk"]),
        _p(
            "sendgrid_api_key",
            _lit("SG.", "A-Za-z0-9_.-") + r"[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}(?![A-Za-z0-9_-])",
            ["sg."],
        ),
        _p("npm_token", _lit("npm_", "A-Za-z0-9_") + r"[A-Za-z0-9]{36}(?![A-Za-z0-9_])", ["npm_"]),
        _p("pypi_token", _lit("pypi-AgE", "A-Za-z0-9_-") + r"[A-Za-z0-9_-]{50,}", ["pypi-age"]),
        _p(
            "azure_storage_account_key",
            r"[Aa](?<![A-Za-z0-9][Aa])(?i:ccountKey)[ \t]*=[ \t]*(?P<secret>[A-Za-z0-9+/]{20,}={0,2})",
            ["accountkey"],
            group="secret",
        ),
        _p(
            "azure_shared_access_key",
            r"[Ss](?<![A-Za-z0-9][Ss])(?i:haredAccessKey)[ \t]*=[ \t]*(?P<secret>[A-Za-z0-9+/]{20,}={0,2})",
            ["sharedaccesskey"],
            group="secret",
        ),
        _p("azure_sas_signature", r"[?&;]sig=(?P<secret>[A-Za-z0-9%+/=]{16,})", ["sig="], group="secret"),
        _p(
            "azure_client_secret",
            r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])",
            ["q~"],
        ),
        _p(
            "anthropic_api_key",
            _lit("sk-ant-", "A-Za-z0-9_-") + r"(?:api|admin|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{20,}",
            ["sk-ant-"],
        ),
        # sk- and 20+ more characters, one of them a digit: not "sk-learn" in prose.
        _p(
            "openai_api_key",
            _lit("sk-", "A-Za-z0-9_-") + r"(?=[A-Za-z0-9_-]{0,300}?[0-9])[A-Za-z0-9_-]{20,}",
            ["sk-"],
        ),
        _p("huggingface_token", _lit("hf_", "A-Za-z0-9_") + r"[A-Za-z0-9]{30,40}(?![A-Za-z0-9_])", ["hf_"]),
        _p("heroku_api_key", _lit("HRKU-", "A-Za-z0-9_-") + r"[A-Za-z0-9_-]{20,}", ["hrku-"]),
        _p(
            "shopify_token",
            _lit("shp", "A-Za-z0-9_") + r"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![A-Za-z0-9_])",
            ["shpat_", "shpca_", "shppa_", "shpss_"],
        ),
        _p(
            "digitalocean_token",
            _lit("do", "A-Za-z0-9_") + r"[opr]_v1_[a-f0-9]{64}(?![A-Za-z0-9_])",
            ["dop_v1_", "doo_v1_", "dor_v1_"],
        ),
        _p(
            "hashicorp_vault_token",
            _lit("hv", "A-Za-z0-9_.-") + r"[sbr]\.[A-Za-z0-9_-]{24,}",
            ["hvs.", "hvb.", "hvr."],
        ),
        _p(
            "databricks_token",
            _lit("dapi", "A-Za-z0-9_") + r"[a-f0-9]{32}(?:-[0-9])?(?![A-Za-z0-9_])",
            ["dapi"],
        ),
        _p("new_relic_api_key", _lit("NRAK-", "A-Za-z0-9_-") + r"[A-Z0-9]{27}(?![A-Za-z0-9])", ["nrak-"]),
        _p(
            "age_secret_key",
            r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
            ["age-secret-key-1"],
        ),
        _p(
            "grafana_token",
            _lit("gl", "A-Za-z0-9_")
            + r"(?:sa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|c_[A-Za-z0-9+/]{32,}={0,2})(?![A-Za-z0-9_+/=])",
            ["glsa_", "glc_"],
        ),
        _p(
            "postman_api_key",
            _lit("PMAK-", "A-Za-z0-9_-") + r"[a-f0-9]{24}-[a-f0-9]{34}(?![A-Za-z0-9])",
            ["pmak-"],
        ),
    ]
    auth = [
        # A token of 8+ characters with a digit or a lower-case letter followed by an upper-case one,
        # or of 20+: not "Bearer authentication" or "Bearer Token" in prose.
        _p(
            "bearer_token",
            r"[Bb](?<![A-Za-z0-9_-][Bb])(?i:earer)[ \t]+"
            r"(?P<secret>(?=[A-Za-z0-9._~+/-]{20}|[A-Za-z._~+/-]{0,64}[0-9]|[A-Za-z._~+/-]{0,64}[a-z][A-Z])"
            r"[A-Za-z0-9._~+/-]{8,}=*)"
            r"(?![A-Za-z0-9._~+/=-])",
            ["bearer"],
            group="secret",
        ),
        # In an Authorization header any bearer token is one, letters only and short included.
        _p(
            "bearer_token",
            r"[Aa](?<![A-Za-z0-9][Aa])(?i:uthorization)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?(?i:bearer)[ \t]+"
            r"(?P<secret>[A-Za-z0-9._~+/-]{4,}=*)(?![A-Za-z0-9._~+/=-])",
            ["authorization"],
            group="secret",
        ),
        _p(
            "basic_auth",
            r"[Bb](?<![A-Za-z0-9_-][Bb])(?i:asic)[ \t]+(?P<secret>[A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])",
            ["basic"],
            group="secret",
            validator=is_basic_credentials,
        ),
        # Authorization / Proxy-Authorization with any other scheme (Token, ApiKey, Digest ...) or
        # none; the credential holds a digit.
        _p(
            "authorization",
            r"[Aa](?<![A-Za-z0-9][Aa])(?i:uthorization)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?"
            r"(?!(?i:bearer|basic)(?![A-Za-z0-9]))(?:[A-Za-z][A-Za-z0-9_-]{0,30}[ \t]+)?"
            r"(?P<secret>(?=[^\s\"'\\,;]{0,4096}?[0-9]|[^\s\"'\\,;]{16})[^\s\"'\\,;]{8,})",
            ["authorization"],
            group="secret",
        ),
        # scheme://user:password@host: the password runs to the last @ of the authority. A password
        # may hold / ? or # (unencoded, as people write them); then it runs to the first @, and
        # ``host:8080/path?to=a@b`` is left alone: a port is digits up to the / ? or #.
        _p(
            "url_password",
            r"://(?<=[A-Za-z0-9+.-]://)[^\s:/?#@\[\]]*:"
            r"(?P<secret>[^\s/?#]+(?=@)|(?![0-9]{0,5}[/?#])[^\s@]+(?=@))@",
            ["://"],
            group="secret",
        ),
        # scheme://<token>@host: a token alone as the user (``https://<40 hex>@github.com``); 20+
        # characters with a digit, so ``https://deploy-bot@host`` stays.
        _p(
            "url_token",
            r"://(?<=[A-Za-z0-9+.-]://)(?P<secret>(?=[A-Za-z0-9_-]{0,255}[0-9])[A-Za-z0-9_-]{20,255})@",
            ["://"],
            group="secret",
        ),
        # Cookie and Set-Cookie headers in text: the whole value (name=value pairs, so "cookie: see
        # the policy" in prose stays).
        _p(
            "cookie",
            r"[Cc](?<![A-Za-z0-9][Cc])(?i:ookie)\\?[\"']?[ \t]*:[ \t]*(?P<q>\\?[\"'])?"
            r"(?!(?i:null|none|nil|undefined)(?![A-Za-z0-9_]))"
            r"(?P<secret>[^\s\"'\\][^\r\n\"'\\]*)",
            ["cookie"],
            group="secret",
            validator=lambda value: "=" in value,
        ),
        # mysql -p<password> (the password glued to the flag; ``-p`` alone prompts).
        _p(
            "password",
            r"mysql(?<![A-Za-z0-9_]mysql)(?:dump|admin|import|check|sh)?(?![A-Za-z0-9_])[^\r\n|;&]{0,256}?"
            r"[ \t]-p(?P<secret>[^\s\"'-][^\s\"']*)",
            ["mysql"],
            group="secret",
        ),
    ]
    key_value = [SecretPattern(f.kind, _kv_regex(f), "secret", f.keywords) for f in _KEY_FAMILIES]
    card = [
        # Digits only, 4-4-4-4(-3) with spaces, dashes or dots, or 4-6-5 / 4-6-6 with spaces or
        # dashes; see is_card_number. It may be glued to a word before it (``card4111...``), not
        # to digits, a sign, a dot or a dash.
        _p(
            "credit_card",
            r"[2-6](?<![0-9+.-][2-6])"
            # Not glued to letters and digits unless a letter past f is among the last four before
            # it ("card", "visa", "pan"): in hex ids (trace ids, digests) a digit run is no card.
            r"(?:(?<![A-Za-z0-9_][2-6])|(?<=[g-zG-Z_][2-6])|(?<=[g-zG-Z_][A-Za-z][2-6])"
            r"|(?<=[g-zG-Z_][A-Za-z]{2}[2-6])|(?<=[g-zG-Z_][A-Za-z]{3}[2-6]))"
            r"(?:[0-9]{12,18}"
            r"|[0-9]{3}(?P<s1>[ .-])[0-9]{4}(?P=s1)[0-9]{4}(?P=s1)[0-9]{1,4}(?:(?P=s1)[0-9]{3})?"
            r"|[0-9]{3}(?P<s2>[ -])[0-9]{6}(?P=s2)[0-9]{4,6})"
            r"(?![A-Za-z0-9_-])(?!\.[0-9])",
            ["2", "3", "4", "5", "6"],
            validator=is_card_number,
        ),
    ]
    return (*specific, *auth, *key_value, *card)


def is_us_ssn(text: str) -> bool:
    """A US social security number as issued: area not 000, 666 or 9xx; group and serial not zero."""
    area, group, serial = text.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _pii_patterns() -> tuple[SecretPattern, ...]:
    """Personal data rather than credentials: on unless ERRORREPLAY_SCRUB_PII=off."""
    return (
        # An address, not the user part of a URL (``https://user@host``) nor ``git@host:org/repo``.
        # The local part is bounded and must start a run, so a long run without @ stays linear.
        _p(
            "email",
            r"(?<![A-Za-z0-9._%+/-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}"
            r"(?![A-Za-z0-9-])(?!\.[A-Za-z0-9])(?!:[A-Za-z0-9~/])",
            ["@"],
        ),
        # A US social security number, 3-2-4 digits with dashes, as issued (see is_us_ssn).
        _p(
            "national_id",
            r"[0-8](?<![A-Za-z0-9_.+-][0-8])[0-9]{2}-[0-9]{2}-[0-9]{4}(?![A-Za-z0-9_]|-[0-9])",
            ["-"],
            validator=is_us_ssn,
        ),
    )


def _default_key_rules() -> tuple[SecretKeyRule, ...]:
    rules = [
        SecretKeyRule(
            f.kind,
            re.compile(f.whole_key_regex(), _A),
            re.compile(r"[/~]") if f.value_guard else None,
            f.keywords,
        )
        for f in _KEY_FAMILIES
    ]
    rules.append(
        SecretKeyRule(
            "authorization",
            re.compile(r"(?<![A-Za-z0-9])(?i:authorization)\Z|(?<=[a-z0-9])Authorization\Z", _A),
            keywords=("authorization",),
        )
    )
    rules.append(
        SecretKeyRule(
            "cookie", re.compile(r"(?<![A-Za-z0-9])(?i:cookie)\Z|(?<=[a-z0-9])Cookie\Z", _A), keywords=("cookie",)
        )
    )
    # Keys too short or too common to look for in free text ("session: 5 started"), but whose
    # value under that exact key is a secret: a session id, a PIN, a one-time password.
    for kind, name, suffix in (
        ("session", "session", r"(?:[_.-]?(?:id|key|token))?"),
        ("pin", "pin", r"(?:[_.-]?code)?"),
        ("otp", "otp", r"(?:[_.-]?code)?"),
    ):
        camel = name[0].upper() + name[1:]
        rules.append(
            SecretKeyRule(
                kind,
                re.compile(rf"(?<![A-Za-z0-9])(?i:{name}{suffix})\Z|(?<=[a-z0-9]){camel}(?i:{suffix})\Z", _A),
                keywords=(name,),
            )
        )
    return tuple(rules)


DEFAULT_PATTERNS: Final[tuple[SecretPattern, ...]] = _default_patterns()
DEFAULT_KEY_RULES: Final[tuple[SecretKeyRule, ...]] = _default_key_rules()
DEFAULT_KINDS: Final[frozenset[str]] = frozenset(p.kind for p in DEFAULT_PATTERNS) | frozenset(
    r.kind for r in DEFAULT_KEY_RULES
)
PII_PATTERNS: Final[tuple[SecretPattern, ...]] = _pii_patterns()
PII_KINDS: Final[frozenset[str]] = frozenset(p.kind for p in PII_PATTERNS)


# --- configuration ----------------------------------------------------------------------------


def parse_patterns(text: str, source: str = "<patterns>") -> list[SecretPattern]:
    """Parse ``<kind><TAB><regex>`` lines (see the module docstring)."""
    patterns: list[SecretPattern] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, tab, regex = line.partition("\t")
        kind = kind.strip()
        if not tab or not regex:
            raise ValueError(f"{source}:{lineno}: expected <kind><TAB><regex>")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise ValueError(f"{source}:{lineno}: bad regex for {kind!r}: {e}") from e
        group = EXTRA_PATTERN_SECRET_GROUP if EXTRA_PATTERN_SECRET_GROUP in compiled.groupindex else None
        try:
            patterns.append(SecretPattern(kind, compiled, group))
        except ValueError as e:
            raise ValueError(f"{source}:{lineno}: {e}") from e
    return patterns


def load_patterns(path: str | os.PathLike[str]) -> list[SecretPattern]:
    """Read a pattern file; ValueError if it cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{ENV_EXTRA_PATTERNS}: cannot read {os.fspath(path)!r}: {e}") from e
    return parse_patterns(text, source=os.fspath(path))


# --- the scrubber -----------------------------------------------------------------------------


class SecretScrubber:
    """Masks secrets in text and in nested values. Thread-safe: its only mutable state is a cache
    of short strings found clean."""

    def __init__(
        self,
        patterns: Iterable[SecretPattern] | None = None,
        *,
        extra_patterns: Iterable[SecretPattern] = (),
        disabled_kinds: Iterable[str] = (),
        key_rules: Iterable[SecretKeyRule] | None = None,
        max_depth: int = MAX_SCRUB_DEPTH,
        pii: bool = False,
    ) -> None:
        """`patterns` replace the defaults, `extra_patterns` follow them (so on a tie the default
        kind wins), `key_rules` replace the default dict-key rules. `pii` adds the PII_PATTERNS
        (emails, national ids) after the defaults. `disabled_kinds` turns kinds off in all of
        them; ValueError for a kind that is in none."""
        all_patterns = [
            *(DEFAULT_PATTERNS if patterns is None else patterns),
            *(PII_PATTERNS if pii else ()),
            *extra_patterns,
        ]
        all_rules = list(DEFAULT_KEY_RULES if key_rules is None else key_rules)
        disabled = set(disabled_kinds)
        known = {p.kind for p in all_patterns} | {r.kind for r in all_rules}
        unknown = disabled - known
        if unknown:
            raise ValueError(
                f"unknown secret kinds to disable: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        self._patterns = tuple(p for p in all_patterns if p.kind not in disabled)
        # PII spans give way to the secrets they overlap (``user:pw@host`` is a URL password, not
        # an address); the next scan of the masked text finds any address left.
        pii_ids = {id(p) for p in PII_PATTERNS}
        self._yielding = frozenset(i for i, p in enumerate(self._patterns) if id(p) in pii_ids)
        self._key_rules = tuple(r for r in all_rules if r.kind not in disabled)
        self._max_depth = max_depth
        self._masks = {kind: mask_for(kind) for kind in known}
        # Per pattern: the group to read (0 is the whole match).
        self._groups: tuple[int | str, ...] = tuple(0 if p.group is None else p.group for p in self._patterns)
        # Prefilter: each distinct keyword with the patterns it lets run.
        self._by_keyword, self._always = _keyword_index([p.keywords for p in self._patterns])
        self._rules_by_keyword, self._rules_always = _keyword_index([r.keywords for r in self._key_rules])
        # Short strings found clean (tag values, attribute values repeat a lot). Only strings
        # with nothing to mask are kept, so the cache never holds a secret.
        self._clean: dict[str, None] = {}
        self._clean_chars = 0
        # Identifiers found clean (secret_kinds), kept apart so that unique ids do not churn _clean.
        self._clean_ids: dict[str, None] = {}
        # Clean short dict keys -> the index of the key rule they match, or -1.
        self._key_rule_of: dict[str, int] = {}

    @classmethod
    def from_settings(cls, scrub: ScrubSettings, *, patterns: Iterable[SecretPattern] | None = None) -> SecretScrubber:
        """Defaults (or `patterns`), plus the extra pattern file, minus the disabled kinds, with PII
        per `scrub.pii` (see the module docstring). ValueError on bad config."""
        extra = load_patterns(scrub.extra_patterns_file) if scrub.extra_patterns_file else []
        return cls(patterns, extra_patterns=extra, disabled_kinds=list(scrub.disabled_kinds), pii=scrub.pii)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, patterns: Iterable[SecretPattern] | None = None
    ) -> SecretScrubber:
        """`from_settings` with the scrub settings read through the schema (settings_schema.py)."""
        from errorreplay_server.settings import Settings

        scrub = Settings.from_env(os.environ if environ is None else environ).scrub
        return cls.from_settings(scrub, patterns=patterns)

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds this scrubber masks (text patterns and dict key rules)."""
        return frozenset(p.kind for p in self._patterns) | frozenset(r.kind for r in self._key_rules)

    @property
    def patterns(self) -> tuple[SecretPattern, ...]:
        return self._patterns

    @property
    def key_rules(self) -> tuple[SecretKeyRule, ...]:
        return self._key_rules

    # --- text ---------------------------------------------------------------------------------

    def redactions(self, text: str) -> list[Redaction]:
        """The spans one scan masks, sorted and not overlapping (scrub_text may scan again)."""
        if not text:
            return []
        spans: list[tuple[int, int, int, str]] = []
        for i in _active(text, self._by_keyword, self._always):
            p = self._patterns[i]
            group = self._groups[i]
            validator = p.validator
            for m in p.regex.finditer(text):
                start, end = m.span(group)
                if start >= end:  # the group did not take part, or matched nothing
                    continue
                if validator is not None and not validator(text[start:end]):
                    continue
                spans.append((start, end, i, p.kind))
        if not spans:
            return []
        if self._yielding:
            spans = _drop_yielding_overlaps(spans, self._yielding)
        spans.sort(key=lambda s: (s[0], -s[1], s[2]))
        merged: list[Redaction] = []
        for start, end, _, kind in spans:
            if merged and start < merged[-1].end:
                last = merged[-1]
                if end > last.end:
                    merged[-1] = Redaction(last.start, end, last.kind)
            else:
                merged.append(Redaction(start, end, kind))
        return merged

    def secret_kinds(self, text: str) -> frozenset[str]:
        """The kinds of secret in the text (empty when it holds none), for identifiers that are
        refused rather than masked. Short clean values are remembered: services, environments and
        resource ids repeat."""
        cacheable = len(text) <= _CLEAN_ID_MAX_LEN
        if not text or (cacheable and text in self._clean_ids):
            return frozenset()
        kinds = frozenset(r.kind for r in self.redactions(text))
        if not kinds and cacheable:
            if len(self._clean_ids) >= _CLEAN_CACHE_SIZE:
                self._clean_ids.clear()
            self._clean_ids[text] = None
        return kinds

    def scrub_text(self, text: str) -> str:
        """The text with every secret replaced by ``[REDACTED:<kind>]``.

        Text that changed is scanned again (up to _MAX_PASSES in all): a mask can free a secret
        that was glued to the one before it (``<age key>shpat_...``: the lookbehind of the second
        fails until the first becomes ``]``). So scrubbing is idempotent.
        """
        short = len(text) <= _CLEAN_CACHE_MAX_LEN
        if short and text in self._clean:
            return text
        out = self._mask(text, self.redactions(text))
        if out == text:
            if short:
                if len(self._clean) >= _CLEAN_CACHE_SIZE or self._clean_chars + len(text) > _CLEAN_CACHE_MAX_CHARS:
                    self._clean.clear()
                    self._clean_chars = 0
                self._clean[text] = None
                self._clean_chars += len(text)
            return text
        for _ in range(_MAX_PASSES - 1):
            again = self._mask(out, self.redactions(out))
            if again == out:
                break
            out = again
        return out

    def _mask(self, text: str, found: list[Redaction]) -> str:
        if not found:
            return text
        parts: list[str] = []
        pos = 0
        for r in found:
            parts.append(text[pos : r.start])
            parts.append(self._masks[r.kind])
            pos = r.end
        parts.append(text[pos:])
        return "".join(parts)

    # --- values -------------------------------------------------------------------------------

    def secret_key_kind(self, key: str) -> str | None:
        """The kind of secret a dict key names, or None."""
        i = self._key_rule_index(key)
        return None if i < 0 else self._key_rules[i].kind

    def _key_rule_index(self, key: str) -> int:
        cached = self._key_rule_of.get(key)
        if cached is not None:
            return cached
        found = -1
        for i in _active(key, self._rules_by_keyword, self._rules_always):
            if self._key_rules[i].key.search(key):
                found = i
                break
        if key in self._clean:  # short, and holds no secret: safe to keep
            if len(self._key_rule_of) >= _CLEAN_CACHE_SIZE:
                self._key_rule_of.clear()
            self._key_rule_of[key] = found
        return found

    def scrub_value(self, value: Any) -> Any:
        """Scrub the strings in a value, walking dicts, lists, tuples and sets.

        Returns new containers and leaves the input alone. Dict keys are scrubbed as text too,
        and a value under a key that names a secret is masked whole. Integers of 13+ digits are
        checked as card numbers (one becomes the mask string), bytes as UTF-8 text; other
        scalars come back as they are. Containers deeper than the depth limit become
        DEPTH_LIMIT_MASK.
        """
        return self._scrub(value, 0)

    def scrub_tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """`scrub_value` for a flat str -> str mapping, typed as one."""
        out: dict[str, str] = {}
        for k, v in tags.items():
            scrubbed_key = self.scrub_text(k)
            masked = self._mask_keyed(k, v)
            out[scrubbed_key] = masked if masked is not None else self.scrub_text(v)
        return out

    def _mask_keyed(self, key: str, value: Any) -> str | None:
        """The mask for `value` when `key` names a secret and the value holds something."""
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, str):
            stripped = value.strip()
            if not stripped or stripped.lower() in _NULL_WORDS or _is_mask(stripped):
                return None
        elif isinstance(value, (Mapping, list, tuple, set, frozenset, bytes, bytearray)) and not value:
            return None
        i = self._key_rule_index(key)
        if i < 0:
            return None
        rule = self._key_rules[i]
        if rule.keep_value is not None and isinstance(value, str) and rule.keep_value.match(value):
            return None
        return self._masks[rule.kind]

    def _scrub(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, Mapping):
            if depth >= self._max_depth:
                return DEPTH_LIMIT_MASK
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str):
                    scrubbed_key = self.scrub_text(k)
                    masked = self._mask_keyed(k, v)
                    out[scrubbed_key] = masked if masked is not None else self._scrub(v, depth + 1)
                else:
                    out[k] = self._scrub(v, depth + 1)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            if depth >= self._max_depth:
                return DEPTH_LIMIT_MASK
            items = [self._scrub(v, depth + 1) for v in value]
            if isinstance(value, list):
                return items
            if isinstance(value, tuple):
                return tuple(items)
            try:
                return type(value)(items)
            except TypeError:  # a scrubbed item that is unhashable cannot go back into a set
                return items
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= _MIN_CARD_INT:
                text = str(value)
                scrubbed = self.scrub_text(text)
                return value if scrubbed == text else scrubbed
            return value
        # A Struct carries every number as a double: 4111111111111111 arrives as 4111111111111111.0.
        if isinstance(value, float) and _MIN_CARD_INT <= abs(value) < 10**_MAX_CARD_DIGITS and value.is_integer():
            text = str(int(value))
            scrubbed = self.scrub_text(text)
            return value if scrubbed == text else scrubbed
        if isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("utf-8", errors="replace")
            scrubbed = self.scrub_text(text)
            return value if scrubbed == text else scrubbed
        return value


def _drop_yielding_overlaps(
    spans: list[tuple[int, int, int, str]], yielding: frozenset[int]
) -> list[tuple[int, int, int, str]]:
    """The spans without those of `yielding` patterns that overlap a span of another pattern."""
    strong = [(start, end) for start, end, i, _ in spans if i not in yielding]
    if not strong or len(strong) == len(spans):
        return spans
    return [s for s in spans if s[2] not in yielding or not any(start < s[1] and s[0] < end for start, end in strong)]


def _keyword_index(
    keyword_lists: Sequence[tuple[str, ...]],
) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], tuple[int, ...]]:
    """For each distinct keyword, the indexes that list it; and the indexes with no keywords."""
    by_keyword: dict[str, list[int]] = {}
    always: list[int] = []
    for i, keywords in enumerate(keyword_lists):
        if not keywords:
            always.append(i)
        for k in keywords:
            by_keyword.setdefault(k, []).append(i)
    return tuple((k, tuple(v)) for k, v in by_keyword.items()), tuple(always)


def _active(text: str, by_keyword: tuple[tuple[str, tuple[int, ...]], ...], always: tuple[int, ...]) -> list[int]:
    """The indexes whose keywords occur in the text (or that have none), in order."""
    lowered = text.lower()
    active = set(always)
    for keyword, indexes in by_keyword:
        if keyword in lowered:
            active.update(indexes)
    return sorted(active)


def _is_mask(text: str) -> bool:
    return text.startswith("[REDACTED:") and text.endswith("]") and "[" not in text[1:]


@lru_cache(maxsize=1)
def default_scrubber() -> SecretScrubber:
    """A shared scrubber with the default patterns (no environment)."""
    return SecretScrubber()


__all__ = (
    "DEFAULT_KEY_RULES",
    "DEFAULT_KINDS",
    "DEFAULT_PATTERNS",
    "DEPTH_LIMIT_MASK",
    "ENV_DISABLED_KINDS",
    "ENV_EXTRA_PATTERNS",
    "ENV_SCRUB_PII",
    "MAX_SCRUB_DEPTH",
    "PII_KINDS",
    "PII_PATTERNS",
    "Redaction",
    "SecretKeyRule",
    "SecretPattern",
    "SecretScrubber",
    "default_scrubber",
    "is_basic_credentials",
    "is_card_number",
    "load_patterns",
    "luhn_ok",
    "mask_for",
    "parse_patterns",
)
