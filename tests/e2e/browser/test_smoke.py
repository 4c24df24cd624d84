"""The browser works: Chromium loads a page from a real `eligo serve`, and axe-core runs in it
and finds what it should. (A placeholder until the clinician form has tests of its own.)"""

from __future__ import annotations

from playwright.sync_api import Page

from tests.e2e.browser.conftest import axe_violations, describe
from tests.e2e.helpers import Server

PAGE = (
    "<!doctype html><html lang='en'><head><title>t</title></head>"
    "<body><main><h1>Hi</h1>{image}</main></body></html>"
)


def test_chromium_loads_a_page_from_the_server(page: Page, web_server: Server) -> None:
    response = page.goto(f"{web_server.base}/openapi.json")
    assert response is not None
    assert response.ok, response.status
    assert "openapi" in page.inner_text("body")


def test_axe_finds_a_missing_alt_text_and_none_once_it_is_there(axe_page: Page) -> None:
    axe_page.set_content(PAGE.format(image="<img src='x.png'>"))
    violations = axe_violations(axe_page)
    assert [violation["id"] for violation in violations] == ["image-alt"], describe(violations)
    assert "img" in describe(violations)

    axe_page.set_content(PAGE.format(image="<img src='x.png' alt='A chart'>"))
    violations = axe_violations(axe_page)
    assert violations == [], describe(violations)
