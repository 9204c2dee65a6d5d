"""Hypothesis strategies for hostile requests: odd but well-formed messages, and raw bytes.

Message strategies build real protobuf requests whose fields hold what a careless or hostile client
could send: NUL bytes, query syntax of the stores (FTS5 and Cypher), timestamps outside the
protobuf range (years 0 and 10000) and with negative nanos, open enums far outside their values,
10k tags, attributes nested deeper than any limit, NaN and Infinity in attributes. Byte strategies
produce random bytes, mutations of valid requests, hand-made wire-format records, and nesting
beyond the parser's recursion limit.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from hypothesis import strategies as st

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr

T = TypeVar("T")

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

# --- text ----------------------------------------------------------------------------------------

FTS_SYNTAX = ['"', "*", "NEAR(", "NEAR(a b, 2)", "OR", "AND", "NOT", "-", ":", "^", "(", ")", "message:", "{a b}:c"]
CYPHER_SYNTAX = [
    "})",
    "//",
    "/*",
    "*/",
    "MATCH (n) DETACH DELETE n",
    "}) MATCH (n) DETACH DELETE n //",
    "' OR 1=1 //",
    "`",
    "$param",
    "CALL db.labels()",
    "RETURN 1;",
    "\\u0027",
]
SQL_AND_OTHER = ["'; DROP TABLE errors; --", "%", "_", "\\", "'", "${jndi:ldap://x/a}", "{{7*7}}", "NULL", "?"]
ODD_CHARS = ["\x00", "\x00\x00", "\u202e", "\ufeff", "\u0301", "😀", "\n", "\r\n", "\t", "\x7f", "\u2028", "\uffff"]
NASTY = FTS_SYNTAX + CYPHER_SYNTAX + SQL_AND_OTHER + ODD_CHARS + ["boom", "db", "connection", "refused"]


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Mostly short strings, heavy with NULs and query syntax; sometimes long."""
    return st.one_of(
        st.text(max_size=max_size),
        st.sampled_from(NASTY),
        st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=6)), max_size=8).map(" ".join),
        st.lists(st.sampled_from(NASTY), max_size=8).map("".join),
        st.sampled_from([257, 1025, 16 * 1024 + 1, 70_000]).map(lambda n: "x" * n),
    )


def search_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(st.sampled_from([*FTS_SYNTAX, *CYPHER_SYNTAX, "boom", "db", "timeout", "\x00"]), max_size=10).map(
            " ".join
        ),
        st.lists(st.sampled_from([*FTS_SYNTAX, *CYPHER_SYNTAX, "db", '"db']), max_size=10).map("".join),
        texts(),
    )


def page_tokens() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        texts(30),
        st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    )


# --- scalars -------------------------------------------------------------------------------------

YEAR_0 = -62_167_219_200
YEAR_1 = -62_135_596_800
YEAR_9999_END = 253_402_300_799
YEAR_10000 = 253_402_300_800
SECONDS_EDGES = [YEAR_0, YEAR_1 - 1, YEAR_1, -1, 0, 1_760_000_000, YEAR_9999_END, YEAR_10000, *INT64]
NANOS_EDGES = [-1, -999_999_999, 0, 999_999_999, 1_000_000_000, *INT32]
DURATION_SECONDS_EDGES = [-315_576_000_001, -315_576_000_000, -1, 0, 1, 3600, 86_400, 315_576_000_000, *INT64]


def int32s() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, -1, 50, 100, 500, 1000, 1001, *INT32]), st.integers(*INT32))


def enums(valid: Any) -> st.SearchStrategy[int]:
    """Open proto3 enums: mostly valid values, sometimes anything an int32 holds."""
    return st.one_of(st.sampled_from(list(valid.values())), st.sampled_from([-1, 99, *INT32]), st.integers(*INT32))


def valid_enums(valid: Any) -> st.SearchStrategy[int]:
    return st.sampled_from([v for v in valid.values() if v])


def plain_texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Within every length limit, still full of NULs and query syntax."""
    return st.one_of(
        st.text(max_size=max_size),
        st.sampled_from(NASTY),
        st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=6)), max_size=6).map(" ".join),
    ).map(lambda t: t[:max_size])


def valid_timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    """Inside the protobuf range and not in the future: the year 1 included."""
    return st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.one_of(st.sampled_from([YEAR_1, 0, 1_700_000_000]), st.integers(YEAR_1, 1_760_000_000)),
        nanos=st.one_of(st.sampled_from([0, 999_999_999]), st.integers(0, 999_999_999)),
    )


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    return st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.one_of(st.sampled_from(SECONDS_EDGES), st.integers(*INT64), st.integers(YEAR_1, YEAR_9999_END)),
        nanos=st.one_of(st.sampled_from(NANOS_EDGES), st.integers(*INT32), st.integers(0, 999_999_999)),
    )


def durations() -> st.SearchStrategy[duration_pb2.Duration]:
    return st.builds(
        duration_pb2.Duration,
        seconds=st.one_of(st.sampled_from(DURATION_SECONDS_EDGES), st.integers(*INT64), st.integers(0, 90_000)),
        nanos=st.one_of(st.sampled_from(NANOS_EDGES), st.integers(*INT32)),
    )


def valid_durations(low_seconds: int, high_seconds: int) -> st.SearchStrategy[duration_pb2.Duration]:
    return st.builds(
        duration_pb2.Duration, seconds=st.integers(low_seconds, high_seconds), nanos=st.integers(0, 999_999_999)
    )


def maybe(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), strategy)


def string_maps(max_size: int = 6) -> st.SearchStrategy[dict[str, str]]:
    many = st.sampled_from([65, 1000, 10_000]).map(lambda n: {f"k{i}": f"v{i}" for i in range(n)})
    return st.one_of(st.dictionaries(texts(20), texts(40), max_size=max_size), many)


# --- attributes (google.protobuf.Struct) -----------------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 2.0**53 + 1]),
    texts(20),
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts(10), inner, max_size=4)),
    max_leaves=25,
)


def deep_struct(depth: int, through_lists: bool) -> struct_pb2.Struct:
    """A Struct nested `depth` levels (every other level through a ListValue if asked)."""
    root = struct_pb2.Struct()
    current = root
    for level in range(depth):
        value = current.fields["k"]
        current = value.list_value.values.add().struct_value if through_lists and level % 2 else value.struct_value
    current.fields["leaf"].string_value = "bottom\x00"
    return root


def _struct_from_dict(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def structs() -> st.SearchStrategy[struct_pb2.Struct]:
    # Each level is three messages (Struct, map entry, Value), and the protobuf runtime refuses more
    # than 100 in all, on the client as on the server. These depths stay below that and so reach the
    # server's own depth limit; deeper nesting is sent as raw bytes (nested_attributes_bytes).
    deep = st.one_of(
        st.builds(deep_struct, st.integers(1, 28), st.just(False)),
        st.builds(deep_struct, st.integers(1, 20), st.just(True)),
    )
    return st.one_of(st.dictionaries(texts(10), JSON, max_size=6).map(_struct_from_dict), deep)


# --- messages --------------------------------------------------------------------------------------


@st.composite
def error_reports(draw: st.DrawFn) -> m.ErrorReport:
    r = m.ErrorReport(
        message=draw(st.one_of(st.just("fuzzed error"), texts())),
        severity=draw(enums(m.Severity)),
        source=draw(enums(m.Source)),
    )
    for name in (
        "resource_id",
        "resource_type",
        "service",
        "environment",
        "release",
        "error_type",
        "stack_trace",
        "correlation_id",
        "trace_id",
        "span_id",
    ):
        if draw(st.booleans()):
            setattr(r, name, draw(texts()))
    occurred = draw(maybe(timestamps()))
    if occurred is not None:
        r.occurred_at.CopyFrom(occurred)
    r.tags.update(draw(st.one_of(st.just({}), string_maps())))
    attributes = draw(maybe(structs()))
    if attributes is not None:
        r.attributes.CopyFrom(attributes)
    r.fingerprint.extend(
        draw(st.one_of(st.just([]), st.lists(texts(20), max_size=5), st.just(["fp"] * 100), st.just([""])))
    )
    return r


@st.composite
def storable_reports(draw: st.DrawFn) -> m.ErrorReport:
    """Reports that pass validation, so that odd content reaches the store, the index and the stream."""
    r = m.ErrorReport(
        message=draw(plain_texts(200).filter(lambda t: t.strip())),
        severity=draw(valid_enums(m.Severity)),
        source=draw(valid_enums(m.Source)),
    )
    for name in ("resource_id", "resource_type", "service", "environment", "error_type", "correlation_id", "trace_id"):
        if draw(st.booleans()):
            setattr(r, name, draw(plain_texts(40)))
    if draw(st.booleans()):
        r.stack_trace = draw(plain_texts(400))
    occurred = draw(maybe(valid_timestamps()))
    if occurred is not None:
        r.occurred_at.CopyFrom(occurred)
    r.tags.update(draw(st.dictionaries(plain_texts(20).filter(bool), plain_texts(40), max_size=5)))
    if draw(st.booleans()):
        attributes = draw(
            st.one_of(
                st.dictionaries(plain_texts(10), JSON, max_size=4).map(_struct_from_dict),
                st.builds(deep_struct, st.integers(1, 8), st.booleans()),
            )
        )
        r.attributes.CopyFrom(attributes)
    r.fingerprint.extend(draw(st.lists(plain_texts(20), max_size=3)))
    return r


def capture_requests() -> st.SearchStrategy[rr.CaptureErrorRequest]:
    return st.builds(
        rr.CaptureErrorRequest,
        error=st.one_of(st.none(), error_reports(), storable_reports(), storable_reports()),
        request_id=st.one_of(st.just(""), texts(30)),
        wait_for_context=st.booleans(),
    )


def batch_requests() -> st.SearchStrategy[rr.BatchCaptureErrorsRequest]:
    plenty = st.sampled_from([1001, 5000]).map(
        lambda n: [rr.CaptureErrorRequest(error=m.ErrorReport(message="x", severity=1, source=1)) for _ in range(n)]
    )
    return st.builds(
        rr.BatchCaptureErrorsRequest, requests=st.one_of(st.lists(capture_requests(), max_size=12), plenty)
    )


@st.composite
def _filters(draw: st.DrawFn, hostile: bool) -> m.ErrorFilter:
    severities = enums(m.Severity) if hostile else valid_enums(m.Severity)
    sources = enums(m.Source) if hostile else valid_enums(m.Source)
    words = texts(20) if hostile else plain_texts(20)
    f = m.ErrorFilter(
        severities=draw(st.lists(severities, max_size=4)),
        min_severity=draw(st.one_of(st.just(0), severities)),
        sources=draw(st.lists(sources, max_size=4)),
        resource_ids=draw(st.lists(words, max_size=4)),
        text=draw(st.one_of(st.just(""), search_texts() if hostile else search_texts().map(lambda t: t[:1000]))),
    )
    for name in ("resource_type", "error_type", "correlation_id", "trace_id", "group_id", "service", "environment"):
        if draw(st.booleans()):
            setattr(f, name, draw(st.one_of(words, st.sampled_from(CYPHER_SYNTAX))))
    if draw(st.booleans()):
        f.tags.update(draw(string_maps(3) if hostile else st.dictionaries(words, words, max_size=3)))
    for name in ("start_time", "end_time"):
        ts = draw(maybe(timestamps() if hostile else valid_timestamps()))
        if ts is not None:
            getattr(f, name).CopyFrom(ts)
    return f


def error_filters() -> st.SearchStrategy[m.ErrorFilter]:
    """Hostile filters, and filters that pass validation so that their text reaches the query."""
    return st.one_of(_filters(hostile=True), _filters(hostile=False), _filters(hostile=False))


def search_requests() -> st.SearchStrategy[rr.SearchErrorsRequest]:
    return st.builds(
        rr.SearchErrorsRequest, filter=maybe(error_filters()), page_size=int32s(), page_token=page_tokens()
    )


def statistics_requests() -> st.SearchStrategy[rr.GetStatisticsRequest]:
    return st.builds(
        rr.GetStatisticsRequest,
        start_time=maybe(timestamps()),
        end_time=maybe(timestamps()),
        bucket=maybe(st.one_of(durations(), valid_durations(60, 86_400))),
        filter=maybe(error_filters()),
        top_groups_limit=int32s(),
        include_muted=st.booleans(),
    )


def subscribe_requests(known_ids: Callable[[], list[str]]) -> st.SearchStrategy[rr.SubscribeErrorsRequest]:
    resume = st.one_of(
        st.just(""),
        texts(40),
        st.builds(lambda: known_ids()).flatmap(lambda ids: st.sampled_from(ids or [""])),
        st.integers(*INT64).map(str),
        st.sampled_from(["err_", "cur_", "0", "-1", "cursor:", "v1:", "99999999999999999999999"]),
    )
    return st.builds(
        rr.SubscribeErrorsRequest,
        filter=maybe(error_filters()),
        include_correlated=st.booleans(),
        resume_after=resume,
        heartbeat_interval=maybe(
            st.one_of(durations(), st.builds(duration_pb2.Duration, nanos=st.integers(100_000_000, 400_000_000)))
        ),
    )


def resources() -> st.SearchStrategy[m.Resource]:
    return st.builds(m.Resource, id=texts(20), type=texts(10), name=texts(10), labels=string_maps(3))


def changes() -> st.SearchStrategy[m.Change]:
    return st.builds(
        m.Change,
        change_id=texts(20),
        kind=enums(m.ChangeKind),
        resource_id=texts(20),
        version=texts(10),
        description=texts(),
        author=texts(10),
        occurred_at=maybe(timestamps()),
        metadata=string_maps(3),
    )


def other_unary_requests(known_ids: Callable[[], list[str]]) -> st.SearchStrategy[tuple[str, Any]]:
    """(method path, request) for every remaining unary RPC."""
    ids = st.one_of(texts(30), st.builds(lambda: known_ids()).flatmap(lambda known: st.sampled_from(known or ["x"])))
    e, t = "/errorreplay.v1.ErrorReplayService/", "/errorreplay.v1.TopologyService/"
    known_resources = st.sampled_from(["svc-0", "svc-1", "svc-2"])
    return st.one_of(
        st.tuples(st.just(e + "GetError"), st.builds(rr.GetErrorRequest, error_id=ids)),
        st.tuples(
            st.just(e + "ReplayError"), st.builds(rr.ReplayErrorRequest, error_id=ids, refresh_context=st.booleans())
        ),
        st.tuples(
            st.just(e + "ListRecentErrors"),
            st.builds(
                rr.ListRecentErrorsRequest,
                page_size=int32s(),
                min_severity=enums(m.Severity),
                window=maybe(st.one_of(durations(), valid_durations(0, 7 * 86_400))),
            ),
        ),
        st.tuples(
            st.just(e + "ListErrorsByResource"),
            st.builds(
                rr.ListErrorsByResourceRequest,
                resource_id=st.one_of(texts(20), known_resources),
                page_size=int32s(),
                page_token=page_tokens(),
            ),
        ),
        st.tuples(
            st.just(e + "ListErrorsByCorrelation"),
            st.builds(
                rr.ListErrorsByCorrelationRequest,
                correlation_id=st.one_of(texts(20), st.sampled_from(["corr-0", "corr-1"])),
                page_size=int32s(),
                page_token=page_tokens(),
            ),
        ),
        st.tuples(
            st.just(e + "ListErrorGroups"),
            st.builds(
                rr.ListErrorGroupsRequest,
                statuses=st.lists(enums(m.ErrorGroupStatus), max_size=4),
                order_by=enums(rr.ErrorGroupOrder),
                page_size=int32s(),
                page_token=page_tokens(),
            ),
        ),
        st.tuples(
            st.just(e + "UpdateErrorGroup"),
            st.builds(rr.UpdateErrorGroupRequest, group_id=ids, status=enums(m.ErrorGroupStatus)),
        ),
        st.tuples(
            st.just(t + "UpsertResources"),
            st.builds(
                rr.UpsertResourcesRequest,
                resources=st.lists(resources(), max_size=5),
                dependencies=st.lists(
                    st.builds(
                        m.Dependency,
                        dependent_id=st.one_of(texts(10), known_resources),
                        dependency_id=st.one_of(texts(10), known_resources),
                    ),
                    max_size=5,
                ),
            ),
        ),
        st.tuples(
            st.just(t + "GetTopology"),
            st.builds(rr.GetTopologyRequest, resource_id=st.one_of(texts(20), known_resources), depth=int32s()),
        ),
        st.tuples(st.just(t + "RecordChange"), st.builds(rr.RecordChangeRequest, change=maybe(changes()))),
        st.tuples(
            st.just(t + "ListChanges"),
            st.builds(
                rr.ListChangesRequest,
                resource_ids=st.lists(texts(10), max_size=4),
                start_time=maybe(timestamps()),
                end_time=maybe(timestamps()),
                kinds=st.lists(enums(m.ChangeKind), max_size=3),
                page_size=int32s(),
            ),
        ),
    )


# --- bytes -----------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint((number << 3) | wire_type) + payload


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2, _varint(len(payload)) + payload)


def nested_attributes_bytes(depth: int) -> bytes:
    """A CaptureErrorRequest whose attributes Struct nests `depth` levels, built on the wire."""
    inner = b""
    for _ in range(depth):
        # Struct.fields entry {key: "k", value: Value{struct_value: <inner>}}
        value = _length_delimited(5, inner)
        entry = _length_delimited(1, b"k") + _length_delimited(2, value)
        inner = _length_delimited(1, entry)
    report = _length_delimited(1, b"deep") + _field(2, 0, _varint(4)) + _field(3, 0, _varint(1))
    report += _length_delimited(16, inner)
    return _length_delimited(1, report)


@st.composite
def wire_records(draw: st.DrawFn) -> bytes:
    """Hand-made wire-format records: any field number and wire type, valid-looking or not."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 12))):
        number = draw(st.one_of(st.integers(1, 20), st.sampled_from([0, 19000, 2**29 - 1, 2**29])))
        wire_type = draw(st.integers(0, 7))
        if wire_type == 0:
            payload = _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire_type == 1:
            payload = draw(st.binary(min_size=8, max_size=8))
        elif wire_type == 5:
            payload = draw(st.binary(min_size=4, max_size=4))
        elif wire_type == 2:
            body = draw(st.one_of(st.binary(max_size=40), st.text(max_size=20).map(str.encode)))
            declared = draw(st.one_of(st.just(len(body)), st.integers(0, 2**32)))
            payload = _varint(declared) + body
        else:  # groups (3, 4) are not proto3; 6 and 7 do not exist
            payload = draw(st.binary(max_size=8))
        out += _field(number, wire_type, payload)
    return bytes(out)


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, position, value in edits:
        if not buf:
            buf.append(value)
            continue
        i = position % len(buf)
        if kind == 0:
            buf[i] ^= 1 << (value % 8)
        elif kind == 1:
            del buf[i:]
        elif kind == 2:
            buf.insert(i, value)
        elif kind == 3:
            buf[i] = value
        else:
            buf[i:i] = buf[i : i + 1 + value % 16]
    return bytes(buf)


def mutated(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A valid request's bytes with a few flips, cuts, insertions and duplications."""
    edits = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=6)
    return st.builds(lambda msg, e: _mutate(msg.SerializeToString(), e), valid, edits)


def raw_payloads(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=256),
        mutated(valid),
        wire_records(),
        st.integers(1, 3000).map(nested_attributes_bytes),
        st.sampled_from([b"", b"\x00", b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 10]),
    )
