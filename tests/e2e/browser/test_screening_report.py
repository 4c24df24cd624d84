"""The screening's HTML report (results.report.html) in Chromium: a real screening of a
synthetic registry against every shipped rule set, opened from its file as an analyst opens
it. Its tables are there and filled, nothing overflows the page at a laptop's width, the
funnels are drawn, and axe-core finds no serious accessibility violation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.csv as pa_csv
import pytest
from playwright.sync_api import Page

from app.batch.report_html import CONTENT_SECURITY_POLICY
from app.batch.runner import Outcome, Request, screen, side_file
from app.batch.synth import synthesize
from app.engine.model import RuleBase
from tests.e2e.browser.conftest import artefact, axe_violations, describe

SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory, shipped_rules: RuleBase) -> Outcome:
    folder = tmp_path_factory.mktemp("registry")
    source = folder / "registry.csv"
    pa_csv.write_csv(synthesize(400, shipped_rules.features, seed=3), str(source))
    return screen(Request(source=str(source), out=folder / "results.parquet"), shipped_rules)


def _open(page: Page, outcome: Outcome) -> None:
    page.goto(side_file(outcome.results, ".report.html").as_uri())


def test_the_report_opens_with_its_tables_filled(axe_page: Page, screened: Outcome) -> None:
    _open(axe_page, screened)
    assert axe_page.title() == "Eligo screening report"
    assert axe_page.locator("h1").inner_text() == "Screening report"
    captions = axe_page.locator("caption").all_inner_texts()
    rulesets = screened.report["rulesets"]
    assert "Patients per protocol and status" in captions
    assert "Characteristics of the 400 patients screened" in captions
    assert sum(c.startswith("Criteria of ") for c in captions) == len(rulesets)
    for table in axe_page.locator("table").all():
        caption = table.locator("caption").inner_text()
        assert table.locator("tbody tr").count() > 0, f"{caption}: no rows"
    protocols = axe_page.locator("table", has_text="Patients per protocol and status")
    assert protocols.locator("tbody tr").count() == len(rulesets)
    first = protocols.locator("tbody tr").first.locator("td").nth(1).inner_text()
    assert first == f"{rulesets[0]['counts']['eligible']:,}"
    assert axe_page.locator(".funnel svg").count() == len(rulesets)
    axe_page.screenshot(path=artefact("screening-report.png"))


def test_nothing_overflows_the_page_and_the_contents_link_to_each_protocol(
    page: Page, screened: Outcome
) -> None:
    _open(page, screened)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert page.viewport_size is not None
    assert width <= page.viewport_size["width"]
    last = screened.report["rulesets"][-1]
    page.get_by_role("link", name=last["title"]).first.click()
    assert page.url.endswith(f"#rs-{last['id']}")
    heading = page.locator(f"#rs-{last['id']}")
    assert heading.is_visible()
    assert heading.bounding_box() is not None


def test_axe_finds_no_serious_violation(axe_page: Page, screened: Outcome) -> None:
    _open(axe_page, screened)
    violations = [v for v in axe_violations(axe_page) if v.get("impact") in SERIOUS]
    assert violations == [], describe(violations)


def test_the_page_needs_nothing_from_elsewhere(page: Page, screened: Outcome) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    _open(page, screened)
    report = side_file(screened.results, ".report.html")
    assert requested == [Path(report).as_uri()]


@contextmanager
def _served(page_bytes: bytes) -> Iterator[str]:
    """The page from a real HTTP server on loopback, sent with the report's policy."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            self.end_headers()
            self.wfile.write(page_bytes)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/report.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_served_with_its_policy_the_page_keeps_its_style_and_breaks_no_rule(
    page: Page, screened: Outcome
) -> None:
    """The policy a server sends it with (`CONTENT_SECURITY_POLICY`) lets its one style sheet
    in by hash and nothing else: the page is styled, and Chromium reports no violation."""
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    body = side_file(screened.results, ".report.html").read_bytes()
    with _served(body) as url:
        page.goto(url)
        accent = page.evaluate(
            "() => getComputedStyle(document.querySelector('header')).borderBottomColor"
        )
    assert accent == "rgb(11, 79, 156)"  # the style sheet applied (--accent)
    assert [v for v in violations if "Content Security Policy" in v] == []
    # and a page whose style sheet is not the report's is refused its styles
    with _served(body.replace(b"--accent: #0b4f9c", b"--accent: #ff0000")) as url:
        page.goto(url)
        changed = page.evaluate(
            "() => getComputedStyle(document.querySelector('header')).borderBottomColor"
        )
    assert changed != "rgb(255, 0, 0)"
    assert any("Content Security Policy" in v for v in violations)
