"""Clinician sign-in for the form: local accounts with server-side sessions, a trusted proxy's
identity header, and what each refuses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.api import web_auth
from app.main import create_app
from app.services import accounts
from app.settings import Settings
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES
from tests.databases import app_database
from tests.web.conftest import csrf_of, form_fields, sessions

PASSWORD = "a long enough clinic passphrase"  # noqa: S105 - a test account's
WRONG_PASSWORD = "not the passphrase at all"  # noqa: S105


def _add_clinician(client: TestClient, username: str = "dr.ng") -> None:
    with sessions(client)() as session:
        accounts.create_clinician(session, username, "Dr Ng", PASSWORD, datetime.now(UTC))
        session.commit()


def _sign_in(client: TestClient, password: str = PASSWORD, next_: str = "/") -> httpx.Response:
    token = csrf_of(client.get("/sign-in").text)
    answer: httpx.Response = client.post(
        "/sign-in",
        data={"username": "Dr.Ng", "password": password, "next": next_, "csrf_token": token},
        follow_redirects=False,
    )
    return answer


def test_the_form_needs_a_signed_in_clinician(accounts_app: TestClient) -> None:
    page = accounts_app.get("/?evaluation=abc", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=%2F%3Fevaluation%3Dabc"
    posted = accounts_app.post("/", data=form_fields(ASTIS_CANDIDATE), follow_redirects=False)
    assert posted.status_code == 303
    assert posted.headers["location"].startswith("/sign-in")
    sign_in = accounts_app.get("/sign-in")
    assert "Development mode" not in sign_in.text
    assert 'autocomplete="current-password"' in sign_in.text


def test_signing_in_opens_the_form_and_records_the_clinician(accounts_app: TestClient) -> None:
    _add_clinician(accounts_app)
    answer = _sign_in(accounts_app, next_="/?evaluation=x")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/?evaluation=x"
    cookies = answer.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("eligo-session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie
    token = session_cookie.split(";")[0].split("=", 1)[1]
    with sessions(accounts_app)() as session:
        stored = session.scalars(text("SELECT token_hash FROM web_sessions")).all()
    assert stored
    assert token not in stored  # only a hash is kept
    form = accounts_app.get("/")
    assert "Signed in as <strong>Dr Ng</strong>" in form.text
    fields = {**form_fields(ASTIS_CANDIDATE), "csrf_token": csrf_of(form.text)}
    made = accounts_app.post("/", data=fields, follow_redirects=False)
    assert made.status_code == 303
    page = accounts_app.get(made.headers["location"])
    assert ", by dr.ng" in page.text


def test_a_wrong_password_says_only_that_and_keeps_the_name(accounts_app: TestClient) -> None:
    _add_clinician(accounts_app)
    wrong = _sign_in(accounts_app, password=WRONG_PASSWORD)
    assert wrong.status_code == 401
    html = wrong.text
    assert "wrong user name or password" in html
    assert 'value="Dr.Ng"' in html
    assert "eligo-session" not in str(wrong.headers)
    assert accounts_app.get("/", follow_redirects=False).status_code == 303


def _refusal_page(client: TestClient, username: str, password: str) -> str:
    """The sign-in refusal as a browser gets it, without what differs by design: the CSRF
    token and the user name typed back into its field."""
    token = csrf_of(client.get("/sign-in").text)
    fields = {"username": username, "password": password, "next": "/", "csrf_token": token}
    answer = client.post("/sign-in", data=fields, follow_redirects=False)
    assert answer.status_code == 401
    assert "eligo-session" not in str(answer.headers)
    page: str = answer.text.replace(token, "TOKEN")
    return page.replace(f'value="{username}"', 'value="NAME"')


def test_ten_failures_pause_that_browser_only(accounts_app: TestClient) -> None:
    """Issue 17: anyone could lock a clinician out for 15 minutes, again and again."""
    _add_clinician(accounts_app)
    app: Any = accounts_app.app
    with TestClient(app, raise_server_exceptions=False, client=("198.51.100.7", 5000)) as other:
        for _ in range(10):
            assert _sign_in(other, password=WRONG_PASSWORD).status_code == 401
        paused = _sign_in(other)  # even the right password, from there
        assert paused.status_code == 401
        assert accounts.WRONG in paused.text
    answer = _sign_in(accounts_app)  # the clinician, at their own computer
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


def test_unknown_paused_and_wrong_get_the_same_page(accounts_app: TestClient) -> None:
    """The lockout message told which names exist (issue 17): now every refusal reads alike."""
    _add_clinician(accounts_app)
    wrong = _refusal_page(accounts_app, "Dr.Ng", WRONG_PASSWORD)
    unknown = _refusal_page(accounts_app, "dr.nobody", WRONG_PASSWORD)
    for _ in range(9):
        _refusal_page(accounts_app, "Dr.Ng", WRONG_PASSWORD)
    paused = _refusal_page(accounts_app, "Dr.Ng", PASSWORD)
    for _ in range(9):
        _refusal_page(accounts_app, "dr.nobody", WRONG_PASSWORD)
    unknown_paused = _refusal_page(accounts_app, "dr.nobody", PASSWORD)
    assert wrong == unknown == paused == unknown_paused
    assert accounts.WRONG in wrong


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[TestClient]:
    """Local accounts behind a reverse proxy at 127.0.0.1 that sets X-Forwarded-For."""
    with app_database(tmp_path) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            sign_in="local",
            trusted_proxies=["127.0.0.1/32"],
        )
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 5000)) as c:
            yield c


def test_behind_a_trusted_proxy_failures_count_by_the_browsers_address(
    behind_proxy: TestClient,
) -> None:
    _add_clinician(behind_proxy)
    # The entries left of the proxy's own are the client's to write: they change nothing.
    guesser = {"X-Forwarded-For": "10.9.9.9, 203.0.113.5"}
    for attempt in range(10):
        forged = {"X-Forwarded-For": f"10.0.0.{attempt}, 203.0.113.5"}
        _sign_in_with(behind_proxy, WRONG_PASSWORD, forged if attempt % 2 else guesser)
    assert _sign_in_with(behind_proxy, PASSWORD, guesser).status_code == 401
    clinician = {"X-Forwarded-For": "203.0.113.77"}
    assert _sign_in_with(behind_proxy, PASSWORD, clinician).status_code == 303


def _sign_in_with(client: TestClient, password: str, headers: dict[str, str]) -> httpx.Response:
    token = csrf_of(client.get("/sign-in").text)
    answer: httpx.Response = client.post(
        "/sign-in",
        data={"username": "Dr.Ng", "password": password, "next": "/", "csrf_token": token},
        headers=headers,
        follow_redirects=False,
    )
    return answer


def _source(client: tuple[str, int] | None, forwarded: str | None, trusted: list[str]) -> str:
    scope: dict[str, Any] = {"type": "http", "client": client, "headers": []}
    if forwarded is not None:
        scope["headers"] = [(b"x-forwarded-for", forwarded.encode())]
    settings = Settings(trusted_proxies=trusted)
    return web_auth.client_source(Request(scope), settings)


@pytest.mark.parametrize(
    ("client", "forwarded", "trusted", "source"),
    [
        (("192.0.2.7", 1), None, [], "192.0.2.7"),
        (("2001:db8:1:2:3:4:5:6", 1), None, [], "2001:db8:1:2::/64"),  # one subscriber
        (("::ffff:192.0.2.7", 1), None, [], "192.0.2.7"),
        (("testclient", 1), None, [], "testclient"),
        (None, None, [], "unknown"),
        (("192.0.2.7", 1), "203.0.113.5", [], "192.0.2.7"),  # an untrusted peer's claim
        (("10.0.0.2", 1), "203.0.113.5, 10.0.0.1", ["10.0.0.0/8"], "203.0.113.5"),
        (("10.0.0.2", 1), "10.0.0.3", ["10.0.0.0/8"], "10.0.0.3"),  # proxies all the way
        (("10.0.0.2", 1), "garbage", ["10.0.0.0/8"], "10.0.0.2"),
        (("10.0.0.2", 1), None, ["10.0.0.0/8"], "10.0.0.2"),
    ],
)
def test_client_source(
    client: tuple[str, int] | None, forwarded: str | None, trusted: list[str], source: str
) -> None:
    assert _source(client, forwarded, trusted) == source


def test_signing_out_ends_the_session_on_the_server(accounts_app: TestClient) -> None:
    _add_clinician(accounts_app)
    _sign_in(accounts_app)
    cookie = accounts_app.cookies.get("eligo-session")
    assert cookie
    token = csrf_of(accounts_app.get("/").text)
    out = accounts_app.post("/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert accounts_app.get("/", follow_redirects=False).status_code == 303
    # the old cookie, replayed, is worth nothing
    accounts_app.cookies.set("eligo-session", cookie)
    assert accounts_app.get("/", follow_redirects=False).status_code == 303


def test_sign_in_needs_the_csrf_token_and_goes_nowhere_else(accounts_app: TestClient) -> None:
    _add_clinician(accounts_app)
    accounts_app.get("/sign-in")
    forged = accounts_app.post(
        "/sign-in", data={"username": "dr.ng", "password": PASSWORD}, follow_redirects=False
    )
    assert forged.status_code == 403
    for target in ("//evil.example/x", "https://evil.example", "/\\evil"):
        answer = _sign_in(accounts_app, next_=target)
        assert answer.headers["location"] == "/", target


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[TestClient]:
    """Sign-in by a reverse proxy on 10.0.0.0/8; the test client's address is `testclient`
    unless the transport says otherwise."""
    with app_database(tmp_path) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            sign_in="proxy",
            trusted_proxies=["127.0.0.1/32"],
        )
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 5000)) as c:
            yield c


def test_a_trusted_proxys_header_signs_the_clinician_in(proxied: TestClient) -> None:
    page = proxied.get("/", headers={"X-Forwarded-User": "jdoe@hospital.example"})
    assert page.status_code == 200
    assert "Signed in as <strong>jdoe@hospital.example</strong>" in page.text
    refused = proxied.get("/")
    assert refused.status_code == 401
    assert "single sign-on" in refused.text


def test_the_header_from_anyone_else_is_ignored(tmp_path: Path) -> None:
    with app_database(tmp_path) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            sign_in="proxy",
            trusted_proxies=["10.0.0.0/8"],
        )
        with TestClient(create_app(settings), client=("192.0.2.7", 5000)) as client:
            page = client.get("/", headers={"X-Forwarded-User": "admin"})
    assert page.status_code == 401
    assert re.search(r"Signed in as", page.text) is None


def test_secure_cookies_get_host_only_names(tmp_path: Path) -> None:
    """Behind https (or ELIGO_COOKIE_SECURE): Secure cookies with the `__Host-` prefix."""
    with app_database(tmp_path) as url:
        settings = Settings(rules_dir=SHIPPED_RULES, database_url=url, cookie_secure=True)
        with TestClient(create_app(settings), base_url="https://eligo.example") as client:
            _add_clinician(client)
            answer = _sign_in(client)
    cookies = answer.headers.get_list("set-cookie")
    names = sorted(c.split("=")[0] for c in cookies)
    assert names == ["__Host-eligo-csrf", "__Host-eligo-session"]
    assert all("Secure" in c and "Path=/" in c and "Domain" not in c for c in cookies)


def test_signing_in_clears_away_sessions_nobody_can_use(accounts_app: TestClient) -> None:
    _add_clinician(accounts_app)
    with sessions(accounts_app)() as session:
        clinician = accounts.find_clinician(session, "dr.ng")
        assert clinician is not None
        long_ago = datetime(2020, 1, 1, tzinfo=UTC)
        accounts.start_session(session, clinician, long_ago, max_hours=12)
        session.commit()
    _sign_in(accounts_app)
    with sessions(accounts_app)() as session:
        left = session.scalars(text("SELECT created_at FROM web_sessions")).all()
    assert len(left) == 1  # only the new one
