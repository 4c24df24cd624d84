"""Signing in to the form in Chromium, against a real server with authentication on and a
clinician account made with `eligo users add`, as an operator would."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from app.services import accounts
from tests.astis_patients import ASTIS_CANDIDATE
from tests.databases import app_database
from tests.e2e.browser.conftest import artefact, axe_violations, describe
from tests.e2e.browser.test_form import evaluate, fill, ssc
from tests.e2e.helpers import ELIGO, Server, eligo_process
from tests.web.conftest import csrf_of

PASSWORD = "correct horse battery staple clinic"  # noqa: S105 - the test account's


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with app_database(tmp_path_factory.mktemp("signin")) as url:
        env = {"ELIGO_AUTH": "on", "ELIGO_DATABASE_URL": url, "ELIGO_SIGN_IN": "local"}
        with eligo_process(env=env, log=artefact("server-signed.log")) as server:
            # the server has brought the schema to head; now the operator adds a clinician
            added = subprocess.run(
                [ELIGO, "users", "add", "dr.ng", "--name", "Dr Ng", "--password-stdin"],
                input=PASSWORD + "\n",
                capture_output=True,
                text=True,
                env={**os.environ, **env},
                timeout=60,
                check=False,
            )
            assert added.returncode == 0, added.stderr
            yield server


def test_a_clinician_signs_in_evaluates_and_signs_out(page: Page, signed_server: Server) -> None:
    page.goto(signed_server.base + "/")
    expect(page).to_have_url(signed_server.base + "/sign-in?next=%2F")
    expect(page.get_by_text("Development mode")).to_have_count(0)
    page.get_by_label("User name").fill("dr.ng")
    page.get_by_label("Password").fill("a wrong password, long enough")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")
    expect(page.get_by_label("User name")).to_have_value("dr.ng")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as Dr Ng")).to_be_visible()
    page.get_by_role("button", name="Systemic sclerosis (SSc)").click()  # the disease first
    fill(page, ssc(ASTIS_CANDIDATE))
    evaluate(page)
    expect(page.locator("#rs-hsct-ssc-astis")).to_contain_text("Candidate")
    expect(page.locator(".meta")).to_contain_text("by dr.ng")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(signed_server.base + "/sign-in")
    page.goto(signed_server.base + "/")
    expect(page).to_have_url(signed_server.base + "/sign-in?next=%2F")


def test_guesses_from_elsewhere_do_not_lock_the_clinician_out(
    page: Page, signed_server: Server
) -> None:
    """Issue 17, against the real server: ten wrong passwords for dr.ng from another address
    (127.0.0.2, still loopback) pause signing in as dr.ng from there, and only from there."""
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=signed_server.base, transport=elsewhere, timeout=30) as other:
        for attempt in range(10):
            assert _post_sign_in(other, f"wrong guess number {attempt}").status_code == 401
        paused = _post_sign_in(other, PASSWORD)  # the right password, from there
        assert paused.status_code == 401
        assert accounts.WRONG in paused.text
    page.goto(signed_server.base + "/sign-in")
    page.get_by_label("User name").fill("dr.ng")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as Dr Ng")).to_be_visible()


def _post_sign_in(http: httpx.Client, password: str) -> httpx.Response:
    token = csrf_of(http.get("/sign-in").text)
    fields = {"username": "dr.ng", "password": password, "next": "/", "csrf_token": token}
    return http.post("/sign-in", data=fields)


def test_the_sign_in_page_passes_axe(axe_page: Page, signed_server: Server) -> None:
    axe_page.goto(signed_server.base + "/sign-in")
    found = axe_violations(axe_page)
    assert not found, describe(found)


def test_no_patient_data_or_names_in_the_server_log(signed_server: Server) -> None:
    log = Path(signed_server.log).read_text(encoding="utf-8", errors="replace")
    assert PASSWORD not in log
    assert "11.5" not in log  # no form values
