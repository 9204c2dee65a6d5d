"""cli_render: a hand-built ReplayErrorResponse rendered as plain text and with ANSI colours."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import timestamp_pb2

from errorreplay.client import timestamp
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server import cli_render

ANSI = re.compile(r"\x1b\[[0-9;]*m")
T0 = datetime(2024, 6, 3, 14, 0, tzinfo=UTC)


def at(minutes: float) -> timestamp_pb2.Timestamp:
    return timestamp(T0 + timedelta(minutes=minutes))


def snapshot(
    error_id: str, resource: str, minutes: float, severity: m.Severity.ValueType, message: str
) -> m.ErrorSnapshot:
    return m.ErrorSnapshot(
        error_id=error_id,
        group_id=f"grp_{resource}",
        received_at=at(minutes),
        report=m.ErrorReport(
            message=message,
            severity=severity,
            source=m.SOURCE_APPLICATION,
            resource_id=resource,
            service=f"{resource}-svc",
            environment="production",
            error_type="GatewayTimeout" if resource == "web" else "PoolTimeout",
            occurred_at=at(minutes),
        ),
    )


def cascade_replay() -> rr.ReplayErrorResponse:
    web = snapshot("err_web", "web", 0, m.SEVERITY_HIGH, "504 Gateway Timeout from api")
    return rr.ReplayErrorResponse(
        error=web,
        timeline=[
            m.TimelineEvent(
                time=at(-22),
                kind=m.TIMELINE_EVENT_KIND_CHANGE,
                resource_id="db",
                summary="Deployment v2.1.0 on db",
                reference_id="chg_1",
                severity=m.SEVERITY_INFO,
            ),
            m.TimelineEvent(
                time=at(-2),
                kind=m.TIMELINE_EVENT_KIND_RELATED_ERROR,
                resource_id="db",
                summary="connection pool exhausted",
                reference_id="err_db",
                severity=m.SEVERITY_CRITICAL,
            ),
            m.TimelineEvent(
                time=at(-1),
                kind=m.TIMELINE_EVENT_KIND_RELATED_ERROR,
                resource_id="api",
                summary="upstream 503",
                reference_id="err_api",
                severity=m.SEVERITY_HIGH,
            ),
            m.TimelineEvent(
                time=at(0),
                kind=m.TIMELINE_EVENT_KIND_ERROR,
                resource_id="web",
                summary="504 Gateway Timeout from api",
                reference_id="err_web",
                severity=m.SEVERITY_HIGH,
            ),
        ],
        propagation=m.Propagation(
            origin_error_id="err_db",
            origin_resource_id="db",
            path=[
                m.PropagationStep(resource_id="db", error_id="err_db", occurred_at=at(-2)),
                m.PropagationStep(resource_id="api", error_id="err_api", occurred_at=at(-1)),
                m.PropagationStep(resource_id="web", error_id="err_web", occurred_at=at(0)),
            ],
            explanation="The cascade started on db; api and then web, which depend on it, failed after.",
        ),
        root_cause=m.RootCause(
            category=m.ROOT_CAUSE_CATEGORY_DEPENDENCY_FAILURE,
            confidence=0.82,
            primary_cause=m.Cause(
                category=m.ROOT_CAUSE_CATEGORY_DEPENDENCY_FAILURE,
                summary="db failed first and the failure cascaded along DEPENDS_ON",
                score=0.82,
                resource_id="db",
            ),
            evidence=[
                m.Evidence(timeline_index=1, reference_id="err_db", description="db failed at 13:58"),
                m.Evidence(timeline_index=2, reference_id="err_api"),
            ],
            contributing_factors=[
                m.Cause(
                    category=m.ROOT_CAUSE_CATEGORY_RECENT_CHANGE,
                    summary="Deployment v2.1.0 on db, 22 min before the error",
                    score=0.41,
                    resource_id="db",
                    evidence=[m.Evidence(timeline_index=0, reference_id="chg_1", description="Deployment v2.1.0")],
                )
            ],
        ),
        recommendations=[
            m.Recommendation(
                kind=m.RECOMMENDATION_KIND_ADD_CIRCUIT_BREAKER,
                title="Add a circuit breaker on web -> api",
                rationale="web failed with api instead of degrading.",
                target="web->api",
                priority=2,
            ),
            m.Recommendation(
                kind=m.RECOMMENDATION_KIND_ROLLBACK_CHANGE,
                title="Roll back deployment v2.1.0 on db",
                rationale="The deployment went out 22 min before the cascade began on db.",
                target="chg_1",
                priority=1,
            ),
        ],
        related_changes=[
            m.Change(
                change_id="chg_1",
                kind=m.CHANGE_KIND_DEPLOYMENT,
                resource_id="db",
                version="v2.1.0",
                description="Shrink the connection pool",
                author="deploy-bot",
                occurred_at=at(-22),
            )
        ],
    )


def test_plain_replay_has_every_section_and_no_escape_codes() -> None:
    text = cli_render.render_replay(cascade_replay(), color=False)
    assert "\x1b" not in text
    assert text.startswith("Replay of err_web  HIGH  web / web-svc / production\n")
    assert "Timeline (4 events)" in text
    assert re.search(r"\[0\]\s+13:38:00\s+-22m00s\s+CHANGE\s+db\s+Deployment v2.1.0 on db\n", text)
    assert re.search(r"\[1\]\s+13:58:00\s+-2m00s\s+RELATED_ERROR\s+db\s+CRITICAL connection pool exhausted", text)
    assert re.search(r"\[3\].*ERROR\s+web\s+HIGH 504 Gateway Timeout from api  <- this error", text)
    assert "Propagation  origin db (err_db)" in text
    assert "  db -> api -> web\n" in text
    assert "The cascade started on db" in text
    assert "Root cause  DEPENDENCY_FAILURE  confidence 0.82" in text
    assert "- [1] db failed at 13:58" in text
    assert "- [2] upstream 503" in text  # evidence without a description shows its timeline entry
    assert "RECENT_CHANGE score 0.41: Deployment v2.1.0 on db, 22 min before the error" in text
    # Recommendations come in priority order, each with its rationale.
    rollback = text.index("1. Roll back deployment v2.1.0 on db  [ROLLBACK_CHANGE -> chg_1]")
    breaker = text.index("2. Add a circuit breaker on web -> api  [ADD_CIRCUIT_BREAKER -> web->api]")
    assert rollback < breaker
    assert "why: The deployment went out 22 min before the cascade began on db." in text
    assert re.search(r"DEPLOYMENT\s+db\s+v2.1.0\s+Shrink the connection pool by deploy-bot", text)


def test_colour_replay_is_the_plain_text_plus_escape_codes() -> None:
    plain = cli_render.render_replay(cascade_replay(), color=False)
    coloured = cli_render.render_replay(cascade_replay(), color=True)
    assert "\x1b[1;31mCRITICAL\x1b[0m" in coloured
    assert "\x1b[1;36mTimeline" in coloured
    assert ANSI.sub("", coloured) == plain  # same layout: escape codes never shift a column


def test_empty_replay_renders() -> None:
    text = cli_render.render_replay(rr.ReplayErrorResponse(error=m.ErrorSnapshot(error_id="err_x")))
    assert "Replay of err_x" in text
    assert "(no events)" in text
    assert "Root cause" not in text


def test_unknown_root_cause_shows_zero_confidence() -> None:
    replay = rr.ReplayErrorResponse(root_cause=m.RootCause(category=m.ROOT_CAUSE_CATEGORY_UNKNOWN, confidence=0))
    assert "Root cause  UNKNOWN  confidence 0.00" in cli_render.render_replay(replay)


def test_long_prose_is_wrapped() -> None:
    replay = cascade_replay()
    replay.recommendations[0].rationale = "word " * 60
    for line in cli_render.render_replay(replay).splitlines():
        if line.strip().startswith(("why:", "word")):
            assert len(line) <= cli_render.WRAP_WIDTH


class _Tty:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "mode", "env", "expected"),
    [
        (True, "auto", {}, True),
        (False, "auto", {}, False),
        (True, "auto", {"NO_COLOR": "1"}, False),
        (False, "always", {}, True),
        (True, "never", {}, False),
    ],
)
def test_use_color(tty: bool, mode: str, env: dict[str, str], expected: bool) -> None:
    assert cli_render.use_color(_Tty(tty), mode, env) is expected


def test_error_line_snapshot_and_statistics() -> None:
    snap = snapshot("err_db", "db", -2, m.SEVERITY_CRITICAL, "connection pool\nexhausted")
    snap.report.tags["team"] = "orders"
    line = cli_render.error_line(snap, note="correlated: same correlation id")
    assert line == (
        "2024-06-03 13:58:00  CRITICAL  db  err_db  connection pool exhausted  [correlated: same correlation id]"
    )
    text = cli_render.render_snapshot(snap)
    assert text.startswith("err_db  CRITICAL  connection pool exhausted\n")
    assert re.search(r"occurred\s+2024-06-03 13:58:00 UTC", text)
    assert re.search(r"tags\s+team=orders", text)
    stats = rr.GetStatisticsResponse(
        total_count=3,
        by_severity={"SEVERITY_HIGH": 2, "SEVERITY_CRITICAL": 1},
        top_groups=[m.GroupCount(group_id="grp_1", title="pool exhausted", count=2, status=m.ERROR_GROUP_STATUS_OPEN)],
    )
    rendered = cli_render.render_statistics(stats)
    assert rendered.startswith("Errors  3\n")
    assert re.search(r"HIGH\s+2\n\s+CRITICAL\s+1", rendered)
    assert re.search(r"2\s+OPEN\s+grp_1\s+pool exhausted", rendered)


def test_correlation_note() -> None:
    assert cli_render.correlation_note(m.Correlation()) == ""
    note = cli_render.correlation_note(
        m.Correlation(correlated=True, reason=m.CORRELATION_REASON_UPSTREAM_FAILURE, matched_error_id="err_1")
    )
    assert note == "correlated: upstream failure"


def test_json_keeps_proto_field_names() -> None:
    data = json.loads(cli_render.to_json(cascade_replay()))
    assert data["error"]["error_id"] == "err_web"
    assert data["root_cause"]["contributing_factors"][0]["category"] == "ROOT_CAUSE_CATEGORY_RECENT_CHANGE"
    assert "\n" not in cli_render.to_json(cascade_replay(), indent=None)


def test_limited_context_is_said_before_the_timeline() -> None:
    replay = cascade_replay()
    assert "Limited context" not in cli_render.render_replay(replay)
    replay.context_coverage.CopyFrom(
        m.ContextCoverage(
            sources=7,
            missing_sources=["loki SKIPPED: not configured", "prometheus FAILED: timeout"],
            limited=True,
            summary="The diagnosis had little to go on: 5 of 7 context sources gave nothing (loki SKIPPED).",
        )
    )
    text = cli_render.render_replay(replay)
    assert "  Limited context: The diagnosis had little to go on: 5 of 7 context sources" in text
    assert text.index("Limited context") < text.index("Timeline (")


def test_replay_shows_the_stack_trace_and_points_at_the_rest() -> None:
    replay = cascade_replay()
    replay.error.report.stack_trace = "Traceback (most recent call last):\n" + "".join(
        f'  File "app.py", line {i}, in handler\n' for i in range(60)
    )
    text = cli_render.render_replay(replay, width=100)
    section = text[text.index("Stack trace\n") : text.index("Timeline (")]
    assert section.startswith("Stack trace\n  Traceback (most recent call last):\n")
    assert '    File "app.py", line 0, in handler\n' in section
    shown = cli_render.STACK_TRACE_LINES
    assert f"line {shown - 2}, in handler" in section and f"line {shown - 1}, in" not in section
    assert f"... {61 - shown} more lines (errorreplay get err_web)" in section
    assert text.index("Stack trace") < text.index("Timeline (")
    assert "Stack trace" not in cli_render.render_replay(cascade_replay(), width=100)


@pytest.mark.parametrize("width", [60, 80, 132])
def test_replay_wraps_to_the_given_width(width: int) -> None:
    replay = cascade_replay()
    replay.timeline[1].summary = "connection pool exhausted: " + "twenty of twenty connections in use " * 6
    replay.propagation.explanation = "The cascade started on db. " * 12
    replay.recommendations[0].rationale = "word " * 80
    replay.recommendations[0].title = "Add a circuit breaker on the web tier's calls " * 3
    text = cli_render.render_replay(replay, width=width)
    for line in text.splitlines():
        assert len(line) <= width, line
    coloured = cli_render.render_replay(replay, width=width, color=True)
    assert ANSI.sub("", coloured) == text  # colour never changes where lines break


def test_replay_follows_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    replay = cascade_replay()
    replay.propagation.explanation = "The cascade started on db. " * 12
    monkeypatch.setenv("COLUMNS", "64")  # what shutil.get_terminal_size reads first
    assert cli_render.terminal_width() == 64
    assert max(len(line) for line in cli_render.render_replay(replay).splitlines()) <= 64
    monkeypatch.setenv("COLUMNS", "150")
    assert max(len(line) for line in cli_render.render_replay(replay).splitlines()) > 100


def test_recommendations_do_not_repeat_the_root_cause_paragraph() -> None:
    replay = cascade_replay()
    primary = replay.root_cause.primary_cause
    factor = replay.root_cause.contributing_factors[0]
    explanation = replay.propagation.explanation
    # What the analysis sends: each rationale repeats the cause it follows from, whole.
    replay.recommendations[
        0
    ].rationale = f"Primary cause (score 0.82): {primary.summary}. {explanation} A breaker lets web degrade."
    replay.recommendations[1].rationale = f"Contributing factor (score 0.41): {factor.summary}."
    replay.recommendations.append(
        m.Recommendation(
            kind=m.RECOMMENDATION_KIND_ESCALATE,
            title="Escalate",
            rationale=f"The error's severity is CRITICAL. The likeliest cause is: {primary.summary} (confidence 0.82).",
            priority=3,
        )
    )
    text = cli_render.render_replay(replay, width=200)
    assert text.count(primary.summary) == 1
    assert text.count(factor.summary) == 1
    assert text.count(explanation) == 1
    recommendations = text[text.index("Recommendations") :]
    assert "why: See the root cause above (score 0.82). A breaker lets web degrade." in recommendations
    assert "why: See a contributing factor above (score 0.41)." in recommendations
    assert "The likeliest cause is: the root cause above (confidence 0.82)." in recommendations


def test_statistics_show_the_window_and_counts_over_time() -> None:
    start = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)
    stats = rr.GetStatisticsResponse(
        total_count=6,
        timed_counts=[
            m.TimedCount(start_time=timestamp(start + timedelta(hours=i)), count=count)
            for i, count in enumerate([0, 4, 2])
        ],
    )
    text = cli_render.render_statistics(stats, start=start, end=start + timedelta(hours=3), width=100)
    assert "  from 2024-06-03 10:00:00 to 2024-06-03 13:00:00 UTC (3h)\n" in text
    over_time = text[text.index("Over time (1h buckets)\n") :].splitlines()[1:]
    assert over_time[0].split() == ["10:00", "0"]
    assert over_time[1].split() == ["11:00", "4", "#" * cli_render.BAR_WIDTH]
    assert over_time[2].split() == ["12:00", "2", "#" * (cli_render.BAR_WIDTH // 2)]


def test_groups_topology_and_changes() -> None:
    group = m.ErrorGroup(
        group_id="grp_1",
        title="PoolTimeout: pool exhausted",
        error_type="PoolTimeout",
        count=12,
        status=m.ERROR_GROUP_STATUS_RESOLVED,
        regression=True,
        max_severity=m.SEVERITY_CRITICAL,
        last_seen=at(0),
        first_seen=at(-60),
        affected_resource_ids=["db"],
        representative_error_id="err_db",
    )
    assert cli_render.render_groups([group]) == (
        "12  RESOLVED REGRESSION  CRITICAL  2024-06-03 14:00:00  grp_1  PoolTimeout: pool exhausted\n"
    )
    assert cli_render.render_groups([]) == "(no groups)\n"
    shown = cli_render.render_group(group, [snapshot("err_db", "db", 0, m.SEVERITY_CRITICAL, "pool exhausted")])
    assert shown.startswith("grp_1  RESOLVED REGRESSION  PoolTimeout: pool exhausted\n")
    assert re.search(r"first seen\s+2024-06-03 13:00:00 UTC", shown)
    assert "Latest errors\n  2024-06-03 14:00:00  CRITICAL  db  err_db  pool exhausted\n" in shown

    topology = m.Topology(
        root_resource_id="api",
        resources=[m.Resource(id="db", type="postgres"), m.Resource(id="api", name="API", labels={"team": "x"})],
        dependencies=[m.Dependency(dependent_id="api", dependency_id="db")],
    )
    assert cli_render.render_topology(topology) == (
        "Topology of api  2 resources, 1 dependencies\n"
        "  api  -         API  team=x\n"
        "  db   postgres  -\n"
        "Depends on  (dependent -> dependency)\n"
        "  api  ->  db\n"
    )
    change = m.Change(
        change_id="chg_1",
        kind=m.CHANGE_KIND_CONFIG,
        resource_id="db",
        version="cfg-7",
        author="ops",
        occurred_at=at(-5),
    )
    assert cli_render.render_changes([change]) == "2024-06-03 13:55:00  CONFIG  db  cfg-7  chg_1  by ops\n"
    assert cli_render.render_changes([]) == "(no changes)\n"
