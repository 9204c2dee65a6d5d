"""The console's replay template and drawings with a full context (metrics with anomalies, spans,
logs, changes, collector states) and hostile strings in every field: all of it escaped, SVG text
included. The browser tests cover the demo, whose server runs no metric or trace collector."""

from __future__ import annotations

import re

from errorreplay_server.analysis.model import (
    ContextCoverage,
    Evidence,
    Propagation,
    PropagationStep,
    Recommendation,
    RecommendationKind,
    ReplayAnalysis,
    RootCause,
    RootCauseCategory,
    TimelineEvent,
    TimelineEventKind,
)
from errorreplay_server.console import drawing
from errorreplay_server.console.session import Viewer
from errorreplay_server.console.views import _environment, replay_values
from errorreplay_server.domain.model import (
    Change,
    ChangeKind,
    CollectionState,
    CollectorStatus,
    Dependency,
    ErrorContext,
    ErrorReport,
    ErrorSnapshot,
    LogLine,
    MetricAnomaly,
    MetricPoint,
    MetricSeries,
    Severity,
    Source,
    Span,
    Topology,
)

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
T = 1_700_000_000_000_000


def hostile_replay() -> tuple[ErrorSnapshot, ReplayAnalysis]:
    report = ErrorReport(
        message="m " + XSS,
        severity=Severity.HIGH,
        source=Source.APPLICATION,
        resource_id="web" + XSS,
        stack_trace="st " + XSS,
        occurred_at=T,
        tags={"t" + XSS: "v" + XSS},
    )
    context = ErrorContext(
        logs=[LogLine(T - 1_000_000, "error" + XSS, "log " + XSS)],
        metrics=[
            MetricSeries(
                "cpu" + XSS,
                points=[MetricPoint(T - 60_000_000 * i, float(i)) for i in range(5)],
                anomalies=[MetricAnomaly(T - 60_000_000, 9.0, 1.0, 3.0, "spike " + XSS)],
                unit="%",
            )
        ],
        spans=[
            Span("tr", "a", service="web" + XSS, name="GET " + XSS, start_time=T - 50_000, duration_us=40_000),
            Span(
                "tr",
                "b",
                parent_span_id="a",
                service="db",
                name="q",
                start_time=T - 40_000,
                duration_us=20_000,
                failing=True,
            ),
        ],
        topology=Topology(dependencies=[Dependency("web" + XSS, "db")]),
        statuses=[
            CollectorStatus("prometheus", CollectionState.FAILED, "timeout " + XSS),
            CollectorStatus("loki", CollectionState.SKIPPED, "LOKI_URL not set"),
        ],
    )
    snapshot = ErrorSnapshot("err_1", "grp_1", T, report, "fp", context=context)
    change = Change("chg", ChangeKind.DEPLOYMENT, "db", T - 600_000_000, "v2", "deploy " + XSS, "me" + XSS)
    analysis = ReplayAnalysis(
        timeline=[
            TimelineEvent(T - 600_000_000, TimelineEventKind.CHANGE, "db", "change " + XSS, "chg"),
            TimelineEvent(T, TimelineEventKind.ERROR, "web" + XSS, "err " + XSS, "err_1"),
        ],
        propagation=Propagation(
            "err_0",
            "db",
            [PropagationStep("db", "err_0", T - 1), PropagationStep("web" + XSS, "err_1", T)],
            "why " + XSS,
        ),
        root_cause=RootCause(None, RootCauseCategory.RECENT_CHANGE, 0.8, evidence=[Evidence(0, "chg", "ev " + XSS)]),
        recommendations=[Recommendation(RecommendationKind.ROLLBACK_CHANGE, "roll " + XSS, "because " + XSS, "chg", 1)],
        related_changes=[change],
        related_errors=[],
        affected_resource_ids=[],
        context_coverage=ContextCoverage(7, ["loki SKIPPED: LOKI_URL not set"], True, "little " + XSS),
    )
    return snapshot, analysis


def render(snapshot: ErrorSnapshot, analysis: ReplayAnalysis) -> str:
    viewer = Viewer(False, True, True, (), "c")
    return (
        _environment()
        .get_template("replay.html")
        .render(
            viewer=viewer,
            auth_enabled=False,
            csrf="c",
            csrf_field="csrf_token",
            path="/",
            **replay_values(snapshot, analysis),
        )
    )


def test_every_hostile_value_is_escaped_in_html_and_svg() -> None:
    html = render(*hostile_replay())
    assert "<script>alert" not in html and "<img src=x" not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"
    for where in ("m ", "st ", "log ", "spike ", "deploy ", "why ", "ev ", "roll ", "because ", "timeout ", "little "):
        assert where + escaped in html, where
    # SVG attributes too: the resource id is an attribute value and a <title>.
    assert 'data-resource-id="web&lt;script&gt;' in html


def test_replay_draws_the_path_the_charts_and_the_waterfall() -> None:
    html = render(*hostile_replay())
    assert re.search(r'<g class="node on-path origin failing" data-resource-id="db">', html)
    assert 'class="edge on-path" data-from="web&lt;script&gt;' in html
    assert html.count('class="anomaly"') == 1 and 'class="error-time"' in html
    assert '<g class="span failing">' in html  # the failing child span
    assert 'href="#t-0"' in html and 'id="t-0"' in html and 'id="t-1"' in html
    assert "<strong>failed</strong>" in html and "<strong>skipped</strong>" in html


def test_drawing_geometry() -> None:
    snapshot, analysis = hostile_replay()
    graph = drawing.dependency_graph([Dependency("lb", "web"), Dependency("web", "api")], analysis.propagation, "web")
    columns = {n.resource_id: n.x for n in graph.nodes}
    assert columns["lb"] < columns["web"] < columns["api"]  # callers left of their dependencies
    bars, height = drawing.waterfall(snapshot.context.spans)
    assert [b.depth for b in bars] == [0, 1] and height == 36
    assert bars[0].x == 0 and bars[1].x > 0
    chart = drawing.metric_chart(snapshot.context.metrics[0], T)
    assert chart.error_x == max(float(p.split(",")[0]) for p in chart.points.split())  # the error is the latest time
    assert drawing.sparkline([0, 2, 1]) == "0.0,22.0 60.0,2.0 120.0,12.0"
    assert drawing.offset(T - 90_000_000, T) == "-1m 30s" and drawing.offset(T + 1_500_000, T) == "+1.500s"


def test_the_token_cookie_is_secure_when_the_listener_serves_tls() -> None:
    from aiohttp import web

    from errorreplay_server.console.session import TOKEN_COOKIE, Sessions
    from errorreplay_server.grants import Role, TokenGrant
    from errorreplay_server.security_settings import SecuritySettings

    security = SecuritySettings(tokens=(TokenGrant(Role.READER, "reader-token"),))
    for tls in (True, False):
        response = web.Response()
        Sessions(security, tls).sign_in(response, "reader-token")
        cookie = response.cookies[TOKEN_COOKIE]
        assert bool(cookie["secure"]) is tls
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
