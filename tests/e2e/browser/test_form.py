"""The clinician form in real headless Chromium against a real `eligo serve` (development
mode): a clinician fills it in, sees the verdicts, corrects a mistake, loads FHIR, works by
keyboard alone, prints the report; axe-core checks every page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.astis_patients import ASTIS_CANDIDATE
from tests.e2e.browser.conftest import VIEWPORT, artefact, axe_violations, describe
from tests.e2e.helpers import Server
from tests.fhir.bundles import ssc_bundle


def fill(page: Page, patient: dict[str, Any]) -> None:
    """Type a patient into the form the way a clinician would."""
    for key, value in patient.items():
        if isinstance(value, bool):
            page.locator(f'#field-{key} input[value="{"yes" if value else "no"}"]').check()
        elif isinstance(value, dict):
            page.fill(f"#f-{key}", str(value["value"]))
            page.select_option(f'select[name="{key}.unit"]', value["unit"])
        elif isinstance(value, str):
            page.select_option(f"#f-{key}", value)
        else:
            page.fill(f"#f-{key}", str(value))


def panel(page: Page, ruleset: str) -> Locator:
    return page.locator(f"#rs-{ruleset}")


def evaluate(page: Page) -> None:
    page.get_by_role("button", name="Evaluate").click()
    page.wait_for_url("**/?evaluation=*")


def test_a_clear_candidate_is_shown_as_a_candidate(page: Page, web_server: Server) -> None:
    page.goto(web_server.base)
    fill(page, ASTIS_CANDIDATE)
    evaluate(page)
    astis = panel(page, "hsct-ssc-astis")
    expect(astis.get_by_role("heading", level=4)).to_contain_text("ASTIS: ✓ Candidate")
    expect(astis).to_contain_text("DLCO: 55 %")
    expect(astis.locator("svg.scale").first).to_be_visible()
    glance = page.get_by_role("table", name="At a glance")
    expect(glance.get_by_role("row", name="ASTIS")).to_contain_text("Candidate")
    # the form is there again, filled in as typed
    expect(page.locator("#f-pao2_mmhg")).to_have_value("11.5")
    expect(page.locator('select[name="pao2_mmhg.unit"]')).to_have_value("kPa")
    page.screenshot(path=artefact("candidate.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artefact("candidate-narrow.png"))


def test_empty_dlco_is_undecided_with_dlco_to_measure_next(page: Page, web_server: Server) -> None:
    page.goto(web_server.base)
    fill(page, {k: v for k, v in ASTIS_CANDIDATE.items() if k != "dlco_percent_predicted"})
    evaluate(page)
    astis = panel(page, "hsct-ssc-astis")
    expect(astis.get_by_role("heading", level=4)).to_contain_text("Undecided")
    measure = astis.locator("ul.missing")
    expect(measure.get_by_role("link")).to_have_text(["DLCO"])
    measure.get_by_role("link", name="DLCO").click()
    expect(page.locator("#f-dlco_percent_predicted")).to_be_in_viewport()


SEVERE_DISEASE = re.compile("severe concomitant disease")


def test_confirmations_come_first_and_each_is_answered_in_one_click(
    page: Page, web_server: Server
) -> None:
    page.goto(web_server.base)
    section = page.locator("#section-confirmations")
    expect(section.get_by_role("heading", level=3)).to_have_text("To confirm (clinician judgement)")
    first, values = section.bounding_box(), page.locator("#section-demographics").bounding_box()
    assert first is not None
    assert values is not None
    assert first["y"] < values["y"]  # before any value to enter
    group = section.get_by_role("group", name=SEVERE_DISEASE)
    expect(group.get_by_role("radio")).to_have_count(3)
    expect(group.get_by_role("radio", name="Not yet assessed")).to_be_checked()
    expect(group).to_contain_text("Asked by")
    page.screenshot(path=artefact("confirmations.png"))
    fill(page, {"ssc_diagnosis": True, "prior_cyclophosphamide_iv_g": 3})
    evaluate(page)
    scot = panel(page, "hsct-ssc-scot")
    expect(scot.get_by_role("heading", level=4)).to_contain_text("confirmation needed")
    confirm = scot.locator("ul.to-confirm")
    expect(confirm.get_by_role("link")).to_have_count(1)
    expect(confirm.get_by_role("link")).to_contain_text("severe concomitant disease")
    expect(scot.locator("ul.missing")).not_to_contain_text("Severe concomitant disease")
    # UPSIDE is ruled out by a value nobody typed: the page says it was derived and why
    expect(panel(page, "hsct-ssc-upside").locator(".derived").first).to_contain_text(
        "derived: Prior IV cyclophosphamide"
    )
    expect(page.locator("#d-prior_alkylating_or_irradiation")).to_contain_text("Taken as yes")
    confirm.get_by_role("link").click()
    expect(page.locator("#f-severe_comorbidity")).to_be_in_viewport()
    page.get_by_role("group", name=SEVERE_DISEASE).get_by_role(
        "radio", name="No (can go on)", exact=True
    ).check()
    evaluate(page)
    expect(panel(page, "hsct-ssc-scot").locator("ul.to-confirm")).to_have_count(0)
    expect(
        page.get_by_role("group", name=SEVERE_DISEASE).get_by_role(
            "radio", name="No (can go on)", exact=True
        )
    ).to_be_checked()


def test_an_impossible_lvef_is_named_at_the_field_and_the_rest_is_kept(
    page: Page, web_server: Server
) -> None:
    page.goto(web_server.base)
    fill(page, {**ASTIS_CANDIDATE, "lvef_percent": 150})
    page.get_by_role("button", name="Evaluate").click()
    field = page.locator("#field-lvef_percent")
    expect(field.locator(".error")).to_have_text(
        "Error: 150 % is outside the plausible range 5–90 %"
    )
    expect(page.locator("#f-lvef_percent")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#error-summary")).to_be_focused()  # the script moves focus there
    for key in ("age_years", "mrss", "dlco_percent_predicted"):
        expect(page.locator(f"#f-{key}")).to_have_value(str(ASTIS_CANDIDATE[key]))
    expect(page.locator("#f-pao2_mmhg")).to_have_value("11.5")
    expect(page.locator('#field-ild_present input[value="yes"]')).to_be_checked()
    expect(page.locator("#f-ssc_subtype")).to_have_value("diffuse_cutaneous")
    page.screenshot(path=artefact("impossible-lvef.png"))
    # corrected, it evaluates
    page.fill("#f-lvef_percent", "60")
    evaluate(page)
    expect(panel(page, "hsct-ssc-astis")).to_contain_text("Candidate")


def test_a_pasted_fhir_bundle_fills_the_form_with_its_sources(
    page: Page, web_server: Server
) -> None:
    page.goto(web_server.base)
    page.get_by_text("Load a patient from a FHIR R4 bundle").click()
    bundle = json.dumps(ssc_bundle(datetime.now(UTC).date()))
    page.get_by_label("Paste the Bundle (JSON)").fill(bundle)
    page.get_by_role("button", name="Load and evaluate").click()
    page.wait_for_url("**/?evaluation=*")
    expect(page.get_by_role("heading", name="From the FHIR bundle")).to_be_visible()
    source = page.locator("#s-dlco_percent_predicted")
    expect(source).to_contain_text("From FHIR: Observation/")
    expect(page.locator('#field-ssc_diagnosis input[value="yes"]')).to_be_checked()
    dlco_row = panel(page, "hsct-ssc-astis").locator("tr", has_text="DLCO below 40")
    expect(dlco_row.locator(".source")).to_contain_text("from Observation/")


def test_keyboard_alone_completes_the_form(page: Page, web_server: Server) -> None:
    """Tab moves through the form in order, every stop shows where focus is, radios and selects
    answer the arrow keys, Enter submits."""
    page.goto(web_server.base)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    typed = {
        "age_years": "45",
        "disease_duration_years": "2",
        "mrss": "25",
        "dlco_percent_predicted": "55",
    }
    tab_to(page, "#f-severe_comorbidity")  # the confirmations come first
    page.keyboard.press("ArrowRight")  # from "Not yet assessed" to "No (can go on)"
    tab_to(page, "#f-age_years")
    page.keyboard.type(typed["age_years"])
    tab_to(page, "#f-ssc_diagnosis")  # the radio group's checked option: Unknown
    page.keyboard.press("ArrowRight")  # Yes
    tab_to(page, "#f-ssc_subtype")
    page.keyboard.press("ArrowDown")  # diffuse cutaneous, the first value after Unknown
    for key in ("disease_duration_years", "mrss", "dlco_percent_predicted"):
        tab_to(page, f"#f-{key}")
        page.keyboard.type(typed[key])
    page.keyboard.press("Enter")
    page.wait_for_url("**/?evaluation=*")
    expect(page.locator("#f-ssc_subtype")).to_have_value("diffuse_cutaneous")
    expect(page.locator('#field-ssc_diagnosis input[value="yes"]')).to_be_checked()
    for key, value in typed.items():
        expect(page.locator(f"#f-{key}")).to_have_value(value)
    expect(page.locator('#field-severe_comorbidity input[value="no"]')).to_be_checked()
    astis = panel(page, "hsct-ssc-astis")
    expect(astis.get_by_role("heading", level=4)).to_contain_text("Undecided")


def tab_to(page: Page, selector: str, limit: int = 300) -> None:
    """Press Tab until `selector` has focus; each stop must show a visible focus indicator."""
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("e => e === document.activeElement"):
            outline = target.evaluate("e => getComputedStyle(e).outlineStyle")
            assert outline != "none", f"{selector} has focus but no visible outline"
            return
    raise AssertionError(f"{selector} not reached in {limit} presses of Tab")


def test_without_javascript_the_form_still_works(browser: Browser, web_server: Server) -> None:
    context = browser.new_context(java_script_enabled=False, viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(web_server.base)
        fill(page, ASTIS_CANDIDATE)
        evaluate(page)
        expect(panel(page, "hsct-ssc-astis")).to_contain_text("Candidate")
    finally:
        context.close()


def test_the_report_prints_with_id_versions_and_review_status(
    page: Page, web_server: Server
) -> None:
    page.goto(web_server.base)
    fill(page, ASTIS_CANDIDATE)
    evaluate(page)
    evaluation_id = page.locator("#evaluation-id").inner_text()
    page.get_by_role("link", name="Printable report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Eligo eligibility report")
    page.emulate_media(media="print")
    expect(page.locator("#evaluation-id")).to_have_text(evaluation_id)
    versions = page.get_by_role("table", name="Rule set versions used")
    expect(versions.get_by_role("row", name="hsct-ssc-astis")).to_contain_text("2.0.0")
    expect(versions.get_by_role("row", name="hsct-ssc-astis")).to_contain_text("draft")
    expect(page.get_by_role("button", name="Print this report")).to_be_hidden()
    pdf = page.pdf(path=artefact("report.pdf"), format="A4")
    assert pdf.startswith(b"%PDF")


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_pass_axe(axe_page: Page, web_server: Server, width: int) -> None:
    page = axe_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(web_server.base)
    found = {"form": axe_violations(page)}
    fill(page, {**ASTIS_CANDIDATE, "lvef_percent": 150})
    page.get_by_role("button", name="Evaluate").click()
    found["errors"] = axe_violations(page)
    page.fill("#f-lvef_percent", "60")
    evaluate(page)
    found["results"] = axe_violations(page)
    page.get_by_role("link", name="Printable report").click()
    found["report"] = axe_violations(page)
    # undecided: to confirm apart from to measure, a derived value, shared criteria
    page.goto(web_server.base)
    fill(page, {"ssc_diagnosis": True, "prior_cyclophosphamide_iv_g": 3})
    evaluate(page)
    found["undecided"] = axe_violations(page)
    problems = {name: describe(v) for name, v in found.items() if v}
    assert not problems, problems


def test_narrow_screens_do_not_scroll_sideways(page: Page, web_server: Server) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(web_server.base)
    fill(page, ASTIS_CANDIDATE)
    evaluate(page)
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 390, f"page is {overflow}px wide on a 390px screen"
