"""Browser tests: Debian's headless Chromium driven by Playwright (sync API), against a real
`eligo serve`, with axe-core (npm, tests/e2e/browser/node_modules) for accessibility checks.

`bash scripts/browser.sh` installs both (CI sources it). Playwright's own browser downloads are
never used: the browser is launched from `executable_path=/usr/bin/chromium`.

Fixtures:
- `playwright`, `browser`: one Playwright driver and one Chromium for all browser tests.
- `web_server`: one `eligo serve` (development, authentication off, fresh database) for all
  browser test modules; its output goes to test-artifacts/browser/server.log.
- `page`: a fresh browser context (1280x900) and page per test; a screenshot of it is saved to
  test-artifacts/browser/<test name>.png when the test fails.
- `axe_page`: the same, with the page's Content-Security-Policy bypassed so that axe-core can be
  injected (see `axe_violations`).

The three long-lived fixtures are package-scoped: shared by every module in this directory (one
browser, one server), and closed when its last test has run rather than at the end of the whole
session. A live sync Playwright marks its asyncio loop as running in the main thread between
calls, which would break any later test of the session that runs an event loop there, and the
browser and server would be left idle for the rest of the run.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.helpers import Server, eligo_process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ARTEFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
SETUP_HINT = "run `bash scripts/browser.sh` (Debian's chromium, then npm ci for axe-core)"

# The machine's closed network refuses Chromium's background connections (updates, sync, QUIC
# probes...): without these flags it retries them and slows down or stalls.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
TIMEOUT_MS = 10_000  # Playwright's default (30 s) only makes a failing test slower.
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory is an `e2e` test (this hook sees the whole session's
    items, hence the path check)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, for the page fixtures' screenshot on failure."""
    del call
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def artefact(name: str) -> Path:
    """`<repo>/test-artifacts/browser/<name>` (the directory is created), for screenshots, PDFs
    and logs a test keeps on purpose."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS / name


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: {SETUP_HINT}", pytrace=False)
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
    )
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="package")
def web_server() -> Iterator[Server]:
    """`eligo serve` on a free loopback port (see tests/e2e/helpers.py); `.base` is its URL."""
    with eligo_process(log=artefact("server.log")) as server:
        yield server


def _page(browser: Browser, request: pytest.FixtureRequest, *, bypass_csp: bool) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=bypass_csp)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        yield page
        reports = request.node.stash.get(_REPORTS, {})
        if any(report.failed for report in reports.values()):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            try:
                page.screenshot(path=artefact(f"{name}.png"), full_page=True)
            except PlaywrightError as error:  # e.g. the page crashed or was closed
                print(f"no screenshot of the failed test {request.node.nodeid}: {error}")
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a context of its own, the page's Content-Security-Policy enforced."""
    yield from _page(browser, request, bypass_csp=False)


@pytest.fixture
def axe_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page for `axe_violations`: its context bypasses Content-Security-Policy. The app's
    pages send a strict CSP (`script-src 'self'`) that rightly blocks the inline script axe-core
    is injected as. Bypassing it changes nothing axe looks at (markup, styles, ARIA), but it
    also stops the page's own CSP being enforced: test CSP behaviour with `page`."""
    yield from _page(browser, request, bypass_csp=True)


def axe_violations(page: Page, *, tags: Sequence[str] = WCAG_TAGS) -> list[dict[str, Any]]:
    """Run axe-core in the page (limited to rules with one of `tags`) and return its
    violations (each with id, impact, help, helpUrl and nodes). The page must come from
    `axe_page` if it has a Content-Security-Policy."""
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS.relative_to(ROOT)} is missing: {SETUP_HINT}", pytrace=False)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        try:
            page.add_script_tag(path=AXE_JS)
        except PlaywrightError as error:
            raise AssertionError(
                f"could not inject axe-core ({error}); a page with a Content-Security-Policy "
                "needs the `axe_page` fixture (bypass_csp=True)"
            ) from error
        if not page.evaluate("() => typeof window.axe === 'object'"):
            raise AssertionError(
                "axe-core did not load: a page with a Content-Security-Policy needs the "
                "`axe_page` fixture (bypass_csp=True)"
            )
    results: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", list(tags)
    )
    violations: list[dict[str, Any]] = results["violations"]
    return violations


def describe(violations: Sequence[dict[str, Any]], *, nodes: int = 3) -> str:
    """One line per violation for an assertion message: id, impact, help and the selectors of
    its first `nodes` elements."""
    lines = []
    for violation in violations:
        targets = [_selector(node["target"]) for node in violation["nodes"][:nodes]]
        more = len(violation["nodes"]) - len(targets)
        where = ", ".join(targets) + (f" (+{more} more)" if more > 0 else "")
        lines.append(f"{violation['id']} [{violation.get('impact')}] {violation['help']}: {where}")
    return "\n".join(lines) or "no violations"


def _selector(target: Sequence[Any]) -> str:
    """axe's target: CSS selectors from the document down through iframes, each a list itself
    when it crosses into shadow DOM."""
    return " >> ".join(
        " >>> ".join(part) if isinstance(part, list) else str(part) for part in target
    )
