import re

import pytest

from errorreplay_server.analysis.grouping import fingerprint, group_id_for, group_title, mask_message, stack_frames
from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.domain.model import ErrorReport, Severity, Source


def report(message: str = "boom", **fields: object) -> ErrorReport:
    return ErrorReport(message=message, severity=Severity.HIGH, source=Source.APPLICATION, **fields)  # type: ignore[arg-type]


def fp(message: str = "boom", **fields: object) -> str:
    return fingerprint(report(message, **fields))[0]


# --- message masking -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("timeout after 3000 ms on shard 7", "timeout after <n> ms on shard <n>"),
        ("order 9b2c1f4e-8a7d-4c3b-9e2f-1a2b3c4d5e6f not found", "order <uuid> not found"),
        ("user 'alice' has no key \"k1\"", "user <str> has no key <str>"),
        ("object at 0x7f3a2c1b9d40 freed", "object at <hex> freed"),
        ("commit 3f2a9c1d7e8b failed", "commit <hex> failed"),
        ("mail to bob.smith+x@example.co.uk bounced", "mail to <email> bounced"),
        ("connect 10.0.12.7:5432 refused", "connect <ip> refused"),
        ("connect [fe80::1] refused", "connect [<ip>] refused"),
        ("at 2024-05-01T12:00:00.123Z the lock expired", "at <ts> the lock expired"),
        ("on 2024-05-01 12:00:00+02:00 the lock expired", "on <ts> the lock expired"),
        ("can't  parse\n\tthis", "can't parse this"),
        ("std::vector overflow", "std::vector overflow"),
    ],
)
def test_mask_message(message: str, masked: str) -> None:
    assert mask_message(message) == masked


def test_messages_differing_only_in_numbers_uuids_or_quoted_values_share_a_fingerprint() -> None:
    a = fp(
        "user 42 order 9b2c1f4e-8a7d-4c3b-9e2f-1a2b3c4d5e6f: key 'abc' missing", error_type="KeyError", service="api"
    )
    b = fp("user 7 order 00000000-1111-2222-3333-444444444444: key 'zzz' missing", error_type="KeyError", service="api")
    assert a == b


def test_a_different_error_type_makes_another_group() -> None:
    assert fp("key 'a' missing", error_type="KeyError") != fp("key 'a' missing", error_type="LookupError")


def test_a_different_service_makes_another_group_and_resource_type_stands_in_for_it() -> None:
    assert fp("x", error_type="E", service="api") != fp("x", error_type="E", service="web")
    assert fp("x", error_type="E", resource_type="pod") != fp("x", error_type="E", resource_type="vm")
    # The service wins over the resource type when both are set.
    assert fp("x", error_type="E", service="api", resource_type="pod") == fp(
        "x", error_type="E", service="api", resource_type="vm"
    )


def test_the_client_fingerprint_overrides_everything() -> None:
    a = fp("one", error_type="A", service="api", fingerprint=["checkout", "card-declined"])
    b = fp("two", error_type="B", service="web", fingerprint=["checkout", "card-declined"])
    assert a == b
    assert a != fp("one", error_type="A", service="api")
    assert a != fp("one", fingerprint=["checkout"])


def test_fingerprint_is_a_sha256_hex_and_stable() -> None:
    digest, _ = fingerprint(report("timeout after 30 s", error_type="TimeoutError", service="api"))
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    # Pinned: a change here silently splits every existing group. Bump the rule version instead.
    assert digest == fp("timeout after 99 s", error_type="TimeoutError", service="api")
    assert digest == "c0ebcaec4f36b2841ee3296c68b12a89ad9c6c93523025368f868704eee56664"


def test_group_id_for() -> None:
    gid = group_id_for("abc")
    assert re.fullmatch(r"grp_[0-9a-f]{20}", gid)
    assert gid == group_id_for("abc")
    assert gid != group_id_for("abd")


def test_title_is_error_type_and_masked_message_cut_short() -> None:
    assert group_title(report("user 42 not found", error_type="NotFound")) == "NotFound: user <n> not found"
    assert group_title(report("user 42 not found")) == "user <n> not found"
    assert group_title(report("", error_type="Boom")) == "Boom"
    long = group_title(report("x" * 500, error_type="E"), AnalysisSettings(group_title_max_chars=20))
    assert len(long) == 20
    assert long.endswith("…")


# --- stack traces ---------------------------------------------------------------------------

PYTHON = """Traceback (most recent call last):
  File "/app/svc/main.py", line {a}, in handle
    return process(req)
  File "/app/svc/logic.py", line {b}, in process
    return parse(x)
  File "/usr/lib/python3.11/site-packages/lib/parse.py", line {c}, in parse
    raise ValueError(x)
ValueError: invalid literal for int() with base 10: '{v}'
"""


def test_python_traces_with_other_line_numbers_share_a_fingerprint() -> None:
    a = fp("bad '1'", error_type="ValueError", stack_trace=PYTHON.format(a=10, b=20, c=30, v="x"))
    b = fp("bad '2'", error_type="ValueError", stack_trace=PYTHON.format(a=11, b=25, c=99, v="y"))
    assert a == b


def test_python_frames_are_innermost_first_without_vendored_prefix() -> None:
    frames = stack_frames(PYTHON.format(a=1, b=2, c=3, v="x"))
    assert frames == ["lib/parse.py:parse", "/app/svc/logic.py:process", "/app/svc/main.py:handle"]


def test_python_chained_exceptions_use_the_last_traceback() -> None:
    chained = (
        'Traceback (most recent call last):\n  File "/app/a.py", line 1, in first\n'
        "KeyError: 'k'\n\nDuring handling of the above exception, another exception occurred:\n\n"
        'Traceback (most recent call last):\n  File "/app/b.py", line 2, in second\nValueError: v\n'
    )
    assert stack_frames(chained) == ["/app/b.py:second"]


def _python_trace(functions: list[str], line: int) -> str:
    body = "".join(f'  File "/app/m.py", line {line + i}, in {f}\n    call()\n' for i, f in enumerate(functions))
    return "Traceback (most recent call last):\n" + body + "RuntimeError: x\n"


def test_only_the_top_five_frames_count() -> None:
    # Innermost five are the last five printed; outer frames may differ.
    inner = ["f1", "f2", "f3", "f4", "f5"]
    a = fp("x", error_type="RuntimeError", stack_trace=_python_trace(["outer_a", *inner], 10))
    b = fp("x", error_type="RuntimeError", stack_trace=_python_trace(["outer_b", "outer_c", *inner], 50))
    assert a == b
    c = fp("x", error_type="RuntimeError", stack_trace=_python_trace(["outer_a", *inner[:-1], "f6"], 10))
    assert a != c


def test_same_message_but_different_frames_make_different_groups() -> None:
    a = fp("x", error_type="E", stack_trace=_python_trace(["a", "b"], 1))
    b = fp("x", error_type="E", stack_trace=_python_trace(["a", "c"], 1))
    assert a != b


JAVA = """java.lang.IllegalStateException: pool exhausted after {n} tries
\tat com.shop.db.Pool.acquire(Pool.java:{a})
\tat com.shop.db.Repo$$Lambda$123/0x0000000800c0b040.apply(Unknown Source)
\tat com.shop.api.OrderService.create(OrderService.java:{b})
\tat java.base/java.lang.Thread.run(Thread.java:833)
\t... 12 more
Caused by: java.net.ConnectException: Connection refused
\tat java.base/sun.nio.ch.Net.connect0(Native Method)
"""


def test_java_frames() -> None:
    frames = stack_frames(JAVA.format(n=3, a=10, b=20))
    assert frames[:4] == [
        "com.shop.db.Pool.acquire",
        "com.shop.db.Repo$$Lambda.apply",
        "com.shop.api.OrderService.create",
        "java.base/java.lang.Thread.run",
    ]
    a = fp("x", error_type="IllegalStateException", stack_trace=JAVA.format(n=3, a=10, b=20))
    b = fp(
        "x",
        error_type="IllegalStateException",
        stack_trace=JAVA.format(n=9, a=11, b=21).replace("0x0000000800c0b040", "0x0000000800d1c151"),
    )
    assert a == b


NODE = """TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (/app/src/users.js:{a}:15)
    at async Promise.all (index 0)
    at Object.<anonymous> (/app/node_modules/express/lib/router.js:{b}:3)
    at /app/src/main.3f2a9c1d.js:{c}:9
"""


def test_node_frames() -> None:
    frames = stack_frames(NODE.format(a=10, b=20, c=30))
    assert frames == [
        "getUser@/app/src/users.js",
        "async Promise.all@index 0",
        "Object.<anonymous>@express/lib/router.js",
        "/app/src/main.<hex>.js",
    ]
    a = fp("x", error_type="TypeError", stack_trace=NODE.format(a=10, b=20, c=30))
    b = fp("x", error_type="TypeError", stack_trace=NODE.format(a=11, b=21, c=31).replace("3f2a9c1d", "77ab12cd"))
    assert a == b


def test_browser_frames() -> None:
    trace = "render@https://cdn.example.com/app.js?v=12:10:5\n@https://cdn.example.com/vendor.js:1:99\n"
    assert stack_frames(trace) == ["render@https://cdn.example.com/app.js", "@https://cdn.example.com/vendor.js"]


GO = """panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1b2c]

goroutine {g} [running]:
main.(*Server).handle(0xc000{x}, {{0x5a1b20, 0xc000012345}})
\t/app/server.go:{a} +0x1d
main.main()
\t/app/main.go:{b} +0x85
"""


def test_go_frames() -> None:
    trace = GO.format(g=1, x="010000", a=42, b=7)
    assert stack_frames(trace) == ["main.(*Server).handle@/app/server.go", "main.main@/app/main.go"]
    other = GO.format(g=17, x="0ab000", a=43, b=9)
    assert fp("x", error_type="panic", stack_trace=trace) == fp("x", error_type="panic", stack_trace=other)


def test_a_trace_without_recognised_frames_falls_back_to_the_message() -> None:
    odd = "something odd happened\nand then more\n"
    assert stack_frames(odd) == []
    assert fp("user 1 failed", error_type="E", stack_trace=odd) == fp("user 2 failed", error_type="E")


def test_frames_setting_bounds_the_frames_used() -> None:
    one = AnalysisSettings(fingerprint_frames=1)
    a = fingerprint(report("x", error_type="E", stack_trace=_python_trace(["a", "z"], 1)), one)[0]
    b = fingerprint(report("x", error_type="E", stack_trace=_python_trace(["b", "z"], 1)), one)[0]
    assert a == b
