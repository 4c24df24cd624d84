"""/docs and /redoc use only the service's own copies of Swagger UI and ReDoc (no CDN, no web
fonts), and their Content-Security-Policy allows exactly that: the one inline script by its
hash, no other origin. tests/e2e/browser/test_docs.py renders them in Chromium offline."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from app.api.docs import REDOC, SWAGGER_UI
from tests.conftest import ROOT

ASSET = re.compile(r'(?:src|href)="([^"]+)"')
PAGES = {
    "/docs": [f"{SWAGGER_UI}/swagger-ui-bundle.js", f"{SWAGGER_UI}/swagger-ui.css"],
    "/redoc": [f"{REDOC}/redoc.standalone.js"],
}


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


@pytest.mark.parametrize(("path", "bundles"), PAGES.items())
def test_the_pages_load_their_assets_from_this_service(
    client: TestClient, path: str, bundles: list[str]
) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assets = ASSET.findall(page.text)
    assert [url for url in assets if not url.startswith("/static/docs/")] == []
    assert not re.search(r"https?://", page.text)  # no CDN, no Google Fonts, no logo elsewhere
    for bundle in bundles:
        assert f"/static/docs/{bundle}" in assets
    for url in assets:
        served = client.get(url)
        assert served.status_code == 200, url
    script = client.get(f"/static/docs/{bundles[0]}")
    assert script.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", PAGES)
def test_the_policy_names_no_other_origin_and_no_unsafe_script(
    client: TestClient, path: str
) -> None:
    page = client.get(path)
    policy = _policy(page.headers["content-security-policy"])
    inline = re.findall(r"<script>(.*?)</script>", page.text, flags=re.S)
    hashes = [
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in inline
    ]
    assert policy["script-src"] == ["'self'", *hashes]
    assert len(hashes) == (1 if path == "/docs" else 0)  # Swagger UI's bootstrap only
    every_source = [source for sources in policy.values() for source in sources]
    assert [s for s in every_source if "." in s or s.startswith("http")] == []
    assert policy["frame-ancestors"] == ["'none'"]
    assert page.headers["x-frame-options"] == "DENY"


def test_no_oauth2_redirect_page_is_served(client: TestClient) -> None:
    """No OAuth2 flow here (bearer tokens only): FastAPI's redirect page, one more inline
    script, is not served."""
    assert client.get("/docs/oauth2-redirect").status_code == 404


def test_the_vendored_assets_carry_their_licences() -> None:
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    for directory in (SWAGGER_UI, REDOC):
        folder = ROOT / "app" / "web" / "static" / "docs" / directory
        assert (folder / "LICENSE").is_file()
        assert f"app/web/static/docs/{directory}/" in notice
    vendored = {p.name for p in (ROOT / "app" / "web" / "static" / "docs").iterdir()}
    assert vendored == {SWAGGER_UI, REDOC}  # an upgrade replaces the old copy
