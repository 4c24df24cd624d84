"""Registry screening from the web in real headless Chromium against a real `eligo serve`
(development mode: everyone may screen): a synthetic registry uploaded, followed to done, its
report opened and its results downloaded; without JavaScript too; axe-core on every page."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser.conftest import VIEWPORT, artefact, axe_violations, describe
from tests.e2e.helpers import Server, run_eligo

PATIENTS = 200
JOB_SECONDS_MS = 60_000  # a job's whole run, on a machine shared with other test runs


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "registry.csv"
    made = run_eligo("synth", "--n", str(PATIENTS), "--out", str(path))
    assert made.returncode == 0, made.stderr
    return path


def submit(page: Page, base: str, registry: Path, *ticked: str) -> None:
    """Upload `registry`, with the options whose labels are `ticked`."""
    page.goto(base + "/screen")
    page.set_input_files("#file", registry)
    for label in ticked:
        page.get_by_label(label).check()
    page.get_by_role("button", name="Screen", exact=True).click()
    page.wait_for_url("**/screen/*")


def test_an_uploaded_registry_is_followed_to_its_report_and_results(
    page: Page, web_server: Server, registry: Path
) -> None:
    page.goto(web_server.base)
    page.get_by_role("navigation", name="Eligo").get_by_role(
        "link", name="Screen a registry"
    ).click()
    page.wait_for_url("**/screen")
    expect(page.get_by_role("heading", level=1)).to_have_text("Screen a registry")
    page.screenshot(path=artefact("screen-form.png"), full_page=True)
    submit(page, web_server.base, registry)
    # The page follows the job by itself (its script, under the page's own CSP) and shows
    # the counts once done.
    expect(page.locator("[data-job-state]")).to_have_text("Done", timeout=JOB_SECONDS_MS)
    expect(page.get_by_text(f"{PATIENTS} rows read")).to_be_visible()
    expect(page.get_by_role("table", name="Patients per rule set and status")).to_be_visible()
    page.screenshot(path=artefact("screen-job.png"), full_page=True)

    with page.expect_download() as waiting:
        page.get_by_role("link", name="Results (CSV)").click()
    download = waiting.value
    rows = list(csv.DictReader(download.path().read_text(encoding="utf-8").splitlines()))
    screened = int(page.get_by_text("rows read").inner_text().split(", ")[1].split()[0])
    assert len(rows) == screened
    assert len({row["id"] for row in rows}) == screened
    assert any(key.endswith(":status") for key in rows[0])

    page.get_by_role("link", name="All your screenings").click()
    expect(page.get_by_role("table", name="Your screenings, newest first")).to_contain_text(
        "registry.csv"
    )
    page.go_back()
    # The report (its runner's part of issue 20) opens in a tab of its own.
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open the report").click()
    report = opened.value
    report.wait_for_load_state()
    expect(report.get_by_role("heading", level=1)).to_have_text("Screening report")
    assert report.title() == "Eligo screening report"
    report.screenshot(path=artefact("screen-report.png"), full_page=True)


def test_strict_and_long_are_ticked_in_the_form_and_the_long_file_downloaded(
    page: Page, web_server: Server, registry: Path
) -> None:
    """The two options by their labels (their help text is each box's description); the job
    page says rows with an unreadable cell were left out and offers the long file."""
    page.goto(web_server.base + "/screen")
    strict = page.get_by_label("Leave out rows with an unreadable cell")
    expect(strict).not_to_be_checked()
    expect(strict).to_have_accessible_description(re.compile("counts as unknown"))
    long = page.get_by_label("Also give the results in long format")
    expect(long).to_have_accessible_description(re.compile("one row per patient and rule set"))
    submit(
        page,
        web_server.base,
        registry,
        "Leave out rows with an unreadable cell",
        "Also give the results in long format",
    )
    expect(page.locator("[data-job-state]")).to_have_text("Done", timeout=JOB_SECONDS_MS)
    expect(page.get_by_text("the row left out (strict)")).to_be_visible()
    with page.expect_download() as waiting:
        page.get_by_role("link", name="Results in long format (Parquet)").click()
    table = pq.read_table(waiting.value.path())
    screened = int(page.get_by_text("rows read").inner_text().split(", ")[1].split()[0])
    rulesets = page.get_by_role("table", name="Patients per rule set and status")
    assert table.num_rows == screened * rulesets.locator("tbody th[scope=row]").count()


def test_without_javascript_a_screening_still_runs_to_its_results(
    browser: Browser, web_server: Server, registry: Path
) -> None:
    context = browser.new_context(java_script_enabled=False, viewport=VIEWPORT)
    try:
        page = context.new_page()
        submit(page, web_server.base, registry)
        # the <noscript> refresh reloads the page until the job is done
        expect(page.locator("[data-job-state]")).to_have_text("Done", timeout=JOB_SECONDS_MS)
        expect(page.get_by_role("link", name="Results (CSV)")).to_be_visible()
        page.get_by_role("button", name="Delete it and its files").click()
        page.wait_for_url("**/screen")
    finally:
        context.close()


def test_the_screening_pages_pass_axe(axe_page: Page, web_server: Server, registry: Path) -> None:
    page = axe_page
    page.goto(web_server.base + "/screen")
    found = {"form": axe_violations(page)}
    page.set_input_files("#file", __file__)  # a .py file: refused, next to the field
    page.get_by_role("button", name="Screen", exact=True).click()
    expect(page.locator("#e-file1")).to_contain_text("test_screening.py: a registry is read")
    expect(page.locator("#error-summary")).to_be_focused()
    page.screenshot(path=artefact("screen-errors.png"), full_page=True)
    found["errors"] = axe_violations(page)
    submit(page, web_server.base, registry)
    found["job"] = axe_violations(page)
    expect(page.locator("[data-job-state]")).to_have_text("Done", timeout=JOB_SECONDS_MS)
    found["job, done"] = axe_violations(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artefact("screen-job-narrow.png"), full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # reflows
    found["job, narrow"] = axe_violations(page)
    problems = {name: describe(v) for name, v in found.items() if v}
    assert not problems, problems
