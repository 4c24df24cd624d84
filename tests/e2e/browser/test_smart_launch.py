"""Eligo opened from the EHR in Chromium: the EHR opens the launch URL, the clinician signs in
to Eligo, the loopback EHR authorises, and the form comes up filled from the patient's Synthea
record, each value saying which resource it came from. A screenshot of it is kept in
test-artifacts/browser/smart-launch-form.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser.conftest import artefact
from tests.e2e.smart_ehr import PASSWORD, USERNAME, Stack, launch_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with launch_stack(tmp_path_factory.mktemp("smart-browser")) as started:
        yield started


def test_the_ehr_opens_eligo_on_its_patient(page: Page, stack: Stack) -> None:
    page.goto(stack.launch_url())
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert stack.ehr.requests == []  # nothing is asked of the EHR before a clinician is known
    page.get_by_label("User name").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Evaluation results")).to_be_visible()
    assert stack.ehr.problems == []
    born = datetime(1953, 5, 22, tzinfo=UTC).date()
    today = datetime.now(UTC).date()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    expect(page.locator("#f-age_years")).to_have_value(str(age))
    expect(page.locator("#f-sex")).to_have_value("female")
    expect(page.locator("#s-age_years")).to_have_text("From FHIR: Patient")
    expect(page.locator("#field-ssc_diagnosis input[value='no']")).to_be_checked()
    expect(page.locator("#s-ssc_diagnosis")).to_contain_text("no active, confirmed Condition")
    expect(page.locator(".meta")).to_contain_text(f"by {USERNAME}")
    page.locator("#values-title").evaluate("e => e.scrollIntoView()")
    page.screenshot(path=artefact("smart-launch-form.png"))
