"""/docs (Swagger UI) and /redoc (ReDoc) render on a network that reaches nothing but this
service, as on a closed hospital network: every request to another host is aborted, and the
operations must still be there under the page's own Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, Route, expect

from tests.e2e.browser.conftest import artefact
from tests.e2e.helpers import Server

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# ReDoc's "API docs by Redocly" credit shows a logo from cdn.redoc.ly, a URL inside its bundle
# with no option to change it. The page's policy blocks it before any request is made (its alt
# text shows instead), and the browser says so on the console: that one line is expected.
REDOC_CREDIT_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# What each page must show, once rendered: the evaluation operation, POST /v1/evaluations.
OPERATION: dict[str, Callable[[Page], None]] = {
    "/docs": lambda page: expect(
        page.locator(".opblock-post .opblock-summary-path[data-path='/v1/evaluations']")
    ).to_be_visible(),
    "/redoc": lambda page: expect(
        page.locator("button:has(span.http-verb.post)", has_text="/v1/evaluations").first
    ).to_contain_text("post/v1/evaluations", ignore_case=True),
}


def _offline(page: Page) -> list[str]:
    """Abort every request that would leave the machine; return the list of those tried."""
    left: list[str] = []

    def only_loopback(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in {"data", "blob"} or urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            left.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", only_loopback)
    return left


@pytest.mark.parametrize("path", OPERATION)
def test_the_docs_render_their_operations_with_no_network_beyond_loopback(
    page: Page, web_server: Server, path: str
) -> None:
    left = _offline(page)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and REDOC_CREDIT_LOGO not in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    response = page.goto(f"{web_server.base}{path}")
    assert response is not None
    assert response.ok, response.status
    OPERATION[path](page)
    page.screenshot(path=artefact(f"docs{path.replace('/', '_')}.png"))
    assert left == []  # nothing even tried to leave: no CDN, no web fonts
    assert problems == []  # no script, style or font refused by the page's policy either
