"""Grouping fingerprints (docs/ARCHITECTURE.md §4 "Grouping").

The fingerprint is, in order of preference:
1. the client's `fingerprint` parts, taken as they are;
2. else the error_type plus the innermost `fingerprint_frames` stack frames, normalised so
   line numbers, columns, addresses and memory ids do not split a group (Python, Java, JS/Node
   and Go frame shapes are recognised; a trace with no recognised frame falls through to 3);
3. else the error_type plus the message with numbers, UUIDs, hex, quoted strings, emails, IP
   addresses and ISO timestamps masked;
and, for 2 and 3, the service (or the resource type when there is no service), so the same
error in two services makes two groups. The digest is SHA-256 over the parts, versioned, so a
future change of rule can never collide with today's groups.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from functools import lru_cache

from errorreplay_server.analysis.formatting import one_line
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.model import ErrorReport

_RULE_VERSION = "fp1"
_SEPARATOR = "\x1f"
GROUP_ID_PREFIX = "grp_"
GROUP_ID_HEX_CHARS = 20

# --- message masking: order matters (timestamps before numbers, UUIDs before hex) ---
_MESSAGE_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b",
            re.IGNORECASE,
        ),
        "<ts>",
    ),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE), "<uuid>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    # Quoted strings; a quote glued to a letter (can't) does not open one.
    (re.compile(r"(?<!\w)'[^'\n]*'(?!\w)"), "<str>"),
    (re.compile(r'"[^"\n]*"'), "<str>"),
    (re.compile(r"`[^`\n]*`"), "<str>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"(?<![\w:])(?=[0-9a-f:]*\d)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.IGNORECASE), "<ip>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    # Bare hex ids (hashes, object ids): long enough, with both a digit and a letter.
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)

# --- stack frames ---
_PY_TRACEBACK = re.compile(r"^\s*Traceback \(most recent call last\):\s*$")
_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+(?:, in (?P<func>.+?))?\s*$')
_AT_FRAME = re.compile(r"^\s*at\s+(?P<body>.+?)\s*$")
# Java: no space before the parenthesis, `pkg.Class.method(File.java:42)`.
_JAVA_BODY = re.compile(r"^(?P<func>[^\s(]+)\((?P<loc>[^()]*)\)$")
# Node: `fn (/app/x.js:10:15)`, also `async fn (...)` and `new Foo (...)`.
_JS_NAMED_BODY = re.compile(r"^(?P<func>.+?)\s+\((?P<loc>.+)\)$")
# Firefox/Safari: `fn@https://host/app.js:10:15`.
_JS_AT_SIGN = re.compile(r"^(?P<func>[^@\s]*)@(?P<loc>\S+:\d+(?::\d+)?)\s*$")
_GO_FUNC = re.compile(r"^(?P<func>[\w./*()\[\]{}\-]+?)\((?P<args>[^()]*)\)$")
_GO_FILE = re.compile(r"^\s+(?P<file>\S+\.go):\d+(?:\s+\+0x[0-9a-f]+)?\s*$", re.IGNORECASE)
_LINE_COL = re.compile(r"(?::\d+){1,2}$")
_QUERY = re.compile(r"\?[^:/]*(?=(?::\d+)*$)")
_VENDOR_PREFIX = re.compile(r"^.*?/(?:site-packages|dist-packages|node_modules)/")
# Lambdas, addresses and identity hashes change from run to run.
_FRAME_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\$\$Lambda\$[\w/$]*"), "$$Lambda"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"@[0-9a-f]{6,}\b", re.IGNORECASE), "@<hex>"),
    (re.compile(r"\b[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    # Bundle and chunk hashes: main.3f2a1b9c.js
    (re.compile(r"\.(?=[0-9a-f]*\d)[0-9a-f]{6,}\.", re.IGNORECASE), ".<hex>."),
)


# What each message mask needs in the text before it can match: a character (or none) and
# whether a digit. A mask whose needs are absent is skipped: most messages have no quote, '@',
# UUID or IPv6 address.
_DIGIT = re.compile(r"\d")
_MASK_NEEDS: tuple[tuple[str, bool], ...] = (
    ("-", True),  # timestamp
    ("-", False),  # uuid
    ("@", False),  # email
    ("'", False),
    ('"', False),
    ("`", False),
    (".", True),  # ipv4
    (":", True),  # ipv6
    ("", True),  # 0x...
    ("", True),  # bare hex
    ("", True),  # numbers
)
_MASKS = tuple((p, r, c, d) for (p, r), (c, d) in zip(_MESSAGE_MASKS, _MASK_NEEDS, strict=True))


def mask_message(message: str) -> str:
    """The message with its variable parts masked and whitespace collapsed."""
    text = message
    has_digit = _DIGIT.search(text) is not None
    for pattern, replacement, char, digit in _MASKS:
        if (digit and not has_digit) or (char and char not in text):
            continue
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def _mask_frame(text: str) -> str:
    for pattern, replacement in _FRAME_MASKS:
        text = pattern.sub(replacement, text)
    return text.strip()


def _location(loc: str) -> str:
    """A file or URL without line, column, query string or the vendored-packages prefix."""
    loc = loc.strip().replace("\\", "/")
    loc = _QUERY.sub("", loc)
    loc = _LINE_COL.sub("", loc)
    return _VENDOR_PREFIX.sub("", loc)


def _python_frames(lines: list[str]) -> list[str]:
    # The last traceback is the one raised; in chained exceptions earlier ones are context.
    starts = [i for i, line in enumerate(lines) if _PY_TRACEBACK.match(line)]
    block = lines[starts[-1] :] if starts else lines
    frames = []
    for line in block:
        m = _PY_FRAME.match(line)
        if m:
            frames.append(f"{_location(m.group('file'))}:{(m.group('func') or '').strip()}")
    # Python prints the innermost frame last.
    return frames[::-1]


def _at_frames(lines: list[str]) -> list[str]:
    frames = []
    for line in lines:
        m = _AT_FRAME.match(line)
        if not m:
            continue
        body = m.group("body")
        java = _JAVA_BODY.match(body)
        if java:
            # The class and method name the frame; the file:line part only moves.
            frames.append(java.group("func"))
            continue
        named = _JS_NAMED_BODY.match(body)
        if named:
            frames.append(f"{named.group('func').strip()}@{_location(named.group('loc'))}")
        else:
            frames.append(_location(body))
    return frames


def _at_sign_frames(lines: list[str]) -> list[str]:
    frames = []
    for line in lines:
        m = _JS_AT_SIGN.match(line.strip())
        if m:
            frames.append(f"{m.group('func')}@{_location(m.group('loc'))}")
    return frames


def _go_frames(lines: list[str]) -> list[str]:
    frames = []
    for func_line, file_line in itertools.pairwise(lines):
        func, where = _GO_FUNC.match(func_line.strip()), _GO_FILE.match(file_line)
        if func and where and not func_line[:1].isspace():
            frames.append(f"{func.group('func')}@{_location(where.group('file'))}")
    return frames


def stack_frames(stack_trace: str) -> list[str]:
    """Normalised frames, innermost first, from the first frame shape found in the trace:
    Python, then `at ...` lines (Java, Node), then `fn@url` lines (browsers), then Go."""
    return list(_stack_frames(stack_trace))


# One code path raises many errors with the same trace: parsing it once is enough.
@lru_cache(maxsize=2048)
def _stack_frames(stack_trace: str) -> tuple[str, ...]:
    lines = stack_trace.splitlines()
    for parse in (_python_frames, _at_frames, _at_sign_frames, _go_frames):
        frames = tuple(f for f in (_mask_frame(x) for x in parse(lines)) if f)
        if frames:
            return frames
    return ()


def _digest(parts: list[str]) -> str:
    material = _SEPARATOR.join([_RULE_VERSION, *parts])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def group_title(report: ErrorReport, settings: AnalysisSettings = DEFAULT_SETTINGS) -> str:
    """`error_type: masked message`, one line, cut to group_title_max_chars."""
    return _title(report.error_type, mask_message(report.message), settings)


def _title(error_type: str, message: str, settings: AnalysisSettings) -> str:
    error_type = error_type.strip()
    text = f"{error_type}: {message}" if error_type and message else error_type or message or "error"
    return one_line(text, settings.group_title_max_chars)


def fingerprint(report: ErrorReport, settings: AnalysisSettings = DEFAULT_SETTINGS) -> tuple[str, str]:
    """(SHA-256 hex digest, group title) for a report. See the module docstring for the rule."""
    masked = mask_message(report.message)
    title = _title(report.error_type, masked, settings)
    if report.fingerprint:
        return _digest(["client", *report.fingerprint]), title
    error_type = report.error_type.strip()
    scope = report.service.strip() or report.resource_type.strip()
    frames = stack_frames(report.stack_trace)[: settings.fingerprint_frames] if report.stack_trace else []
    if frames:
        return _digest(["stack", error_type, scope, *frames]), title
    return _digest(["message", error_type, scope, masked]), title


def group_id_for(fingerprint_hex: str) -> str:
    """A stable group id for a fingerprint: `grp_` and 20 hex characters (80 bits)."""
    digest = hashlib.sha256(fingerprint_hex.encode("utf-8")).hexdigest()
    return GROUP_ID_PREFIX + digest[:GROUP_ID_HEX_CHARS]
