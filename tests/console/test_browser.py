"""The console in a real browser: headless Debian Chromium driven by Selenium through
/usr/bin/chromedriver. Screenshots of each page go to tests/output/screenshots/."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from errorreplay.client import timestamp
from errorreplay.v1 import message_pb2 as m
from errorreplay_server import demo
from tests.console.conftest import ServerThread, Tokens, screenshot

# Bounded waits for the DOM (the machine is shared and noisy): not timing assertions.
DOM_WAIT_SECONDS = 10


def dom_wait(browser: Any) -> WebDriverWait:
    """A bounded wait that looks again when the page re-rendered what it found (a stale element)."""
    return WebDriverWait(browser, DOM_WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,))


XSS = '<img src=x onerror="window.__xss=1;alert(1)"><script>window.__xss=1</script>'


@pytest.fixture(scope="module")
def seeded(server: ServerThread, tokens: Tokens) -> demo.SeededCascade:
    with server.client(tokens.admin) as client:
        return demo.seed(client)


def sign_in(browser: Any, server: ServerThread, token: str, path: str = "/") -> None:
    browser.delete_all_cookies()
    browser.get(server.base + path)
    dom_wait(browser).until(lambda d: d.find_elements(By.ID, "signin-form"))
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    dom_wait(browser).until(lambda d: not d.find_elements(By.ID, "signin-form"))


def no_script_ran(browser: Any) -> None:
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert browser.execute_script("return window.__xss === undefined")
    # The console's own images are the sparklines; an injected one would be an img[src=x].
    assert not browser.find_elements(By.CSS_SELECTOR, "main img:not(.spark), main script, [onerror], #graph b")


def test_groups_page_lists_the_demo_groups_and_filters(
    browser: Any, server: ServerThread, tokens: Tokens, seeded: demo.SeededCascade
) -> None:
    sign_in(browser, server, tokens.reader)
    rows = browser.find_elements(By.CSS_SELECTOR, "#groups .group-row")
    titles = " ".join(r.text for r in rows)
    assert "psycopg_pool.PoolTimeout" in titles and "GatewayTimeout" in titles
    # Each sparkline is an SVG image the page loads after it renders.
    dom_wait(browser).until(
        lambda d: d.execute_script(
            "const s = [...document.querySelectorAll('#groups img.spark')];"
            "return s.length === arguments[0] && s.every(i => i.complete && i.naturalWidth > 0);",
            len(rows),
        )
    )
    screenshot(browser, "groups")

    browser.find_element(By.CSS_SELECTOR, "#filters input[name=text]").send_keys("pool exhausted")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    dom_wait(browser).until(lambda d: d.find_elements(By.ID, "matching-errors"))
    found = browser.find_elements(By.CSS_SELECTOR, "#matching-errors .error-row")
    assert len(found) == 1 and "connection pool exhausted" in found[0].text
    assert "text=pool+exhausted" in browser.current_url
    screenshot(browser, "groups-filtered")


def test_replay_of_the_demo_draws_the_cascade_and_links_evidence(
    browser: Any, server: ServerThread, tokens: Tokens, seeded: demo.SeededCascade
) -> None:
    sign_in(browser, server, tokens.reader, f"/errors/{seeded.error_ids[-1]}")
    assert "504 Gateway Timeout" in browser.find_element(By.ID, "error-message").text
    origin = browser.find_elements(By.CSS_SELECTOR, "#graph g.node.origin")
    assert [o.get_attribute("data-resource-id") for o in origin] == ["db-orders"]
    on_path = {
        n.get_attribute("data-resource-id") for n in browser.find_elements(By.CSS_SELECTOR, "#graph g.node.on-path")
    }
    assert on_path == {"db-orders", "api-orders", "web-frontend"}
    path_edges = {
        (e.get_attribute("data-from"), e.get_attribute("data-to"))
        for e in browser.find_elements(By.CSS_SELECTOR, "#graph line.edge.on-path")
    }
    assert path_edges == {("web-frontend", "api-orders"), ("api-orders", "db-orders")}
    # The load balancer is drawn but not on the path.
    assert browser.find_elements(By.CSS_SELECTOR, '#graph g.node[data-resource-id="lb-edge"]:not(.on-path)')
    screenshot(browser, "replay")

    links = browser.find_elements(By.CSS_SELECTOR, "#evidence a.evidence-link")
    assert links, "the demo's root cause has evidence"
    link = links[-1]
    index = link.get_attribute("data-timeline-index")
    browser.execute_script("window.scrollTo(0, 0)")
    link.click()
    target = browser.find_element(By.ID, f"t-{index}")
    dom_wait(browser).until(
        lambda d: d.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight;",
            target,
        )
    )
    assert browser.current_url.endswith(f"#t-{index}")
    assert "highlight" in (target.get_attribute("class") or "")

    # The context tabs switch; the changes tab holds the demo's deployment.
    browser.find_element(By.CSS_SELECTOR, 'button[data-tab="tab-changes"]').click()
    assert "connection pool" in browser.find_element(By.ID, "tab-changes").text
    assert not browser.find_element(By.ID, "tab-logs").is_displayed()


def test_resolve_needs_the_writer_role(
    browser: Any, server: ServerThread, tokens: Tokens, seeded: demo.SeededCascade
) -> None:
    with server.client(tokens.admin) as client:
        group_id = client.get(seeded.error_ids[0]).group_id

    def status() -> int:
        with server.client(tokens.admin) as client:
            groups = client.list_groups(page_size=100).groups
        return next(g.status for g in groups if g.group_id == group_id)

    sign_in(browser, server, tokens.reader)
    browser.find_element(By.CSS_SELECTOR, f'.group-row[data-group-id="{group_id}"] button.act-resolve').click()
    dom_wait(browser).until(lambda d: d.find_elements(By.ID, "problem-message"))
    assert "writer role" in browser.find_element(By.ID, "problem-message").text
    assert status() == m.ERROR_GROUP_STATUS_OPEN

    sign_in(browser, server, tokens.read_write)
    browser.find_element(By.CSS_SELECTOR, f'.group-row[data-group-id="{group_id}"] button.act-resolve').click()
    dom_wait(browser).until(
        lambda d: "resolved" in d.find_element(By.CSS_SELECTOR, f'.group-row[data-group-id="{group_id}"] .status').text
    )
    assert status() == m.ERROR_GROUP_STATUS_RESOLVED


def test_live_shows_a_new_error_as_it_is_captured(browser: Any, server: ServerThread, tokens: Tokens) -> None:
    sign_in(browser, server, tokens.reader, "/live?service=live-test")
    dom_wait(browser).until(lambda d: d.find_element(By.ID, "live-state").text == "connected")
    marker = f"live error {uuid.uuid4().hex}"
    with server.client(tokens.admin) as client:
        error_id = client.capture(
            m.ErrorReport(message=marker, severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, service="live-test")
        ).error_id
        client.capture(
            m.ErrorReport(
                message="filtered out", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, service="other"
            )
        )
    dom_wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#live-rows tr[data-error-id="{error_id}"]'))
    assert marker in browser.find_element(By.ID, "live-rows").text
    assert "filtered out" not in browser.find_element(By.ID, "live-rows").text
    screenshot(browser, "live")


def test_statistics_page(browser: Any, server: ServerThread, tokens: Tokens, seeded: demo.SeededCascade) -> None:
    sign_in(browser, server, tokens.reader, "/statistics?window=6h")
    assert browser.find_elements(By.CSS_SELECTOR, "#severity-chart rect.sev-fill-critical")
    assert "PoolTimeout" in browser.find_element(By.ID, "top-groups").text
    screenshot(browser, "statistics")


def test_hostile_content_is_shown_as_text(browser: Any, server: ServerThread, tokens: Tokens) -> None:
    resource = "svc-<b>x</b>"
    with server.client(tokens.admin) as client:
        client.upsert_resources([m.Resource(id=resource, type="service")], [])
        client.record_change(
            m.Change(
                change_id=f"chg-{uuid.uuid4().hex[:8]}",
                kind=m.CHANGE_KIND_DEPLOYMENT,
                resource_id=resource,
                version="v1",
                description="deploy " + XSS,
                occurred_at=timestamp_minutes_ago(5),
            )
        )
        error_id = client.capture(
            m.ErrorReport(
                message="boom " + XSS,
                severity=m.SEVERITY_CRITICAL,
                source=m.SOURCE_APPLICATION,
                resource_id=resource,
                service="hostile",
                stack_trace="Traceback " + XSS,
                tags={"t": XSS},
                breadcrumbs=[m.LogLine(level="error", message="log " + XSS, time=timestamp_minutes_ago(1))],
            )
        ).error_id
    sign_in(browser, server, tokens.reader, f"/errors/{error_id}")
    no_script_ran(browser)
    assert XSS in browser.find_element(By.ID, "error-message").text
    assert XSS in browser.find_element(By.ID, "stack-trace").text
    assert XSS in browser.find_element(By.ID, "tags").get_attribute("textContent")
    assert browser.find_elements(By.CSS_SELECTOR, f'#graph g.node[data-resource-id="{resource}"]')
    assert not browser.find_elements(By.CSS_SELECTOR, "#graph b")
    page_text = browser.find_element(By.TAG_NAME, "main").get_attribute("textContent")
    assert "deploy " + XSS in page_text and "log " + XSS in page_text
    screenshot(browser, "hostile")
    for path in ("/", "/?service=hostile", "/live?service=hostile", "/statistics"):
        browser.get(server.base + path)
        no_script_ran(browser)
        assert "boom" in browser.find_element(By.TAG_NAME, "main").text or path == "/statistics"


def timestamp_minutes_ago(minutes: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return timestamp(datetime.now(UTC) - timedelta(minutes=minutes))
