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

SSC_FORM = "/?disease=ssc"  # the SSc work-up: choosing it records the diagnosis


def ssc(patient: dict[str, Any]) -> dict[str, Any]:
    """A patient as the SSc work-up takes them: the diagnosis is the choice itself."""
    return {k: v for k, v in patient.items() if k != "ssc_diagnosis"}


def unfold(page: Page, key: str) -> None:
    """Open the folded group a field is in (values only one protocol asks), as a clinician
    clicks its summary."""
    group = page.locator(f"details.more:has(#field-{key})")
    if group.count() and not group.evaluate("d => d.open"):
        group.locator("summary").click()


def fill(page: Page, patient: dict[str, Any]) -> None:
    """Type a patient into the form the way a clinician would."""
    for key, value in patient.items():
        unfold(page, key)
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
    page.goto(web_server.base + SSC_FORM)
    fill(page, ssc(ASTIS_CANDIDATE))
    evaluate(page)
    astis = panel(page, "hsct-ssc-astis")
    expect(astis.get_by_role("heading", level=4)).to_contain_text("ASTIS: ✓ Candidate")
    expect(astis.locator("svg.scale").first).to_be_hidden()  # the detail is folded
    astis.locator("details.detail > summary").click()
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
    page.goto(web_server.base + SSC_FORM)
    fill(page, {k: v for k, v in ssc(ASTIS_CANDIDATE).items() if k != "dlco_percent_predicted"})
    evaluate(page)
    astis = panel(page, "hsct-ssc-astis")
    expect(astis.get_by_role("heading", level=4)).to_contain_text("Undecided")
    glance = page.get_by_role("table", name="At a glance")
    measure = glance.get_by_role("row", name="ASTIS").locator("ul.measure")
    expect(measure.get_by_role("link")).to_have_text(["DLCO"])
    measure.get_by_role("link", name="DLCO").click()
    expect(page.locator("#f-dlco_percent_predicted")).to_be_in_viewport()


SEVERE_DISEASE = re.compile("severe concomitant disease")
CONTRACEPTION = re.compile("not of childbearing potential or committed to contraception")


def test_confirmations_close_the_work_up_and_each_is_answered_in_one_click(
    page: Page, web_server: Server
) -> None:
    page.goto(web_server.base + SSC_FORM)
    section = page.locator("#section-confirmations")
    expect(section.get_by_role("heading", level=3)).to_have_text("To confirm (clinician judgement)")
    last, safety = section.bounding_box(), page.locator("#section-comorbidities").bounding_box()
    assert last is not None
    assert safety is not None
    assert last["y"] > safety["y"]  # after comorbidities and safety, as a work-up ends
    group = section.get_by_role("group", name=SEVERE_DISEASE)
    expect(group.get_by_role("radio")).to_have_count(3)
    expect(group.get_by_role("radio", name="Not yet assessed")).to_be_checked()
    expect(group).to_contain_text("Asked by")
    section.screenshot(path=artefact("confirmations.png"))
    fill(page, {"prior_cyclophosphamide_iv_g": 3})
    evaluate(page)
    scot = panel(page, "hsct-ssc-scot")
    expect(scot.get_by_role("heading", level=4)).to_contain_text("confirmation needed")
    glance = page.get_by_role("table", name="At a glance")
    confirm = glance.get_by_role("row", name="SCOT").locator("ul.confirm")
    expect(confirm.get_by_role("link")).to_have_count(2)  # SCOT 2.2.0 asks contraception too
    severe = confirm.get_by_role("link", name="Severe concomitant disease")
    expect(severe).to_have_count(1)
    expect(confirm.get_by_role("link", name="Contraception assured")).to_have_count(1)
    expect(scot.locator("ul.missing")).not_to_contain_text("Severe concomitant disease")
    # UPSIDE is ruled out by a value nobody typed: the page says it was derived and why
    expect(panel(page, "hsct-ssc-upside").locator(".derived").first).to_contain_text(
        "derived: Prior IV cyclophosphamide"
    )
    expect(page.locator("#d-prior_alkylating_or_irradiation")).to_contain_text("Taken as yes")
    answer_from_link(page, severe, "severe_comorbidity", SEVERE_DISEASE, "No (can go on)")
    left = glance.get_by_role("row", name="SCOT").locator("ul.confirm").get_by_role("link")
    expect(left).to_have_count(1)
    answer_from_link(page, left, "contraception_assured", CONTRACEPTION, "Yes (can go on)")
    expect(glance.get_by_role("row", name="SCOT").locator("ul.confirm")).to_have_count(0)
    expect(
        page.get_by_role("group", name=SEVERE_DISEASE).get_by_role(
            "radio", name="No (can go on)", exact=True
        )
    ).to_be_checked()


def answer_from_link(
    page: Page, link: Locator, feature: str, question: re.Pattern[str], choice: str
) -> None:
    """Follow a "to confirm" link to its question, which comes into view, answer it and
    evaluate again."""
    link.click()
    expect(page.locator(f"#f-{feature}")).to_be_in_viewport()
    page.get_by_role("group", name=question).get_by_role("radio", name=choice, exact=True).check()
    evaluate(page)


def test_an_impossible_lvef_is_named_at_the_field_and_the_rest_is_kept(
    page: Page, web_server: Server
) -> None:
    page.goto(web_server.base + SSC_FORM)
    fill(page, {**ssc(ASTIS_CANDIDATE), "lvef_percent": 150})
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
    # the record's SSc diagnosis opens the SSc work-up, as if the clinician had chosen it
    expect(page.locator("p.chosen")).to_contain_text("Diagnosis recorded: Systemic sclerosis")
    dlco_row = panel(page, "hsct-ssc-astis").locator("tr", has_text="DLCO below 40")
    expect(dlco_row.locator(".source")).to_contain_text("from Observation/")


def test_keyboard_alone_chooses_ssc_fills_the_work_up_and_evaluates(
    page: Page, web_server: Server
) -> None:
    """Tab moves through the form in order, every stop shows where focus is, radios and selects
    answer the arrow keys, Enter submits. The Tab presses from the work-up's first page to
    Evaluate, filling its main values on the way, are counted (83 before issue 19, without
    filling anything)."""
    page.goto(web_server.base)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    to_choice = 1 + tab_to(page, 'button[value="ssc"]')
    page.keyboard.press("Enter")
    page.wait_for_url("**/?disease=ssc")
    typed = {
        "patient_id": "H-123",
        "age_years": "45",
        "disease_duration_years": "2",
        "mrss": "25",
        "fvc_percent_predicted": "70",
        "dlco_percent_predicted": "55",
        "lvef_percent": "60",
        "mpap_mmhg": "20",
        "creatinine_clearance_ml_min": "90",
    }
    presses = 0
    for key in ("patient_id", "age_years"):
        presses += tab_to(page, f"#f-{key}")
        page.keyboard.type(typed[key])
    presses += tab_to(page, "#f-ssc_subtype")
    page.keyboard.press("ArrowDown")  # diffuse cutaneous, the first value after Unknown
    for key in ("disease_duration_years", "mrss"):
        presses += tab_to(page, f"#f-{key}")
        page.keyboard.type(typed[key])
    presses += tab_to(page, "#f-ild_present")  # the radio group's checked option: Unknown
    page.keyboard.press("ArrowRight")  # Yes
    for key in list(typed)[4:]:  # FVC onwards
        presses += tab_to(page, f"#f-{key}")
        page.keyboard.type(typed[key])
    presses += tab_to(page, "#f-severe_comorbidity")  # the confirmations close the work-up
    page.keyboard.press("ArrowRight")  # from "Not yet assessed" to "No (can go on)"
    presses += tab_to(page, "form.patient button[type=submit]")
    artefact("tab-presses.txt").write_text(
        f"start page to the SSc choice: {to_choice}\nwork-up to Evaluate: {presses}\n"
    )
    assert presses < 60, presses  # the issue counted 83 on the old form, filling nothing
    page.keyboard.press("Enter")
    page.wait_for_url("**/?evaluation=*")
    expect(page.locator("#f-ssc_subtype")).to_have_value("diffuse_cutaneous")
    expect(page.locator('#field-ild_present input[value="yes"]')).to_be_checked()
    for key, value in typed.items():
        if key != "patient_id":  # recorded as a pseudonym, never shown again
            expect(page.locator(f"#f-{key}")).to_have_value(value)
    expect(page.locator("#f-patient_id")).to_have_value("")
    expect(page.locator("dl.meta")).to_contain_text("identifier recorded as the pseudonym")
    expect(page.locator('#field-severe_comorbidity input[value="no"]')).to_be_checked()
    expect(panel(page, "hsct-ssc-astis").get_by_role("heading", level=4)).to_contain_text("ASTIS")
    assert typed["patient_id"] not in web_server.output()  # never reaches the server's log


def tab_to(page: Page, selector: str, limit: int = 300) -> int:
    """Press Tab until `selector` has focus, and say how many presses it took; each stop must
    show a visible focus indicator."""
    target = page.locator(selector)
    for pressed in range(1, limit + 1):
        page.keyboard.press("Tab")
        if target.evaluate("e => e === document.activeElement"):
            outline = target.evaluate("e => getComputedStyle(e).outlineStyle")
            assert outline != "none", f"{selector} has focus but no visible outline"
            return pressed
    raise AssertionError(f"{selector} not reached in {limit} presses of Tab")


def test_without_javascript_the_form_still_works(browser: Browser, web_server: Server) -> None:
    context = browser.new_context(java_script_enabled=False, viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(web_server.base)
        page.get_by_role("button", name="Systemic sclerosis (SSc)").click()  # a GET form
        page.wait_for_url("**/?disease=ssc")
        fill(page, ssc(ASTIS_CANDIDATE))  # folded groups open without a script
        evaluate(page)
        expect(panel(page, "hsct-ssc-astis")).to_contain_text("Candidate")
    finally:
        context.close()


A4_MARGIN = "1cm"
A4_CONTENT_PX = (794 - 2 * 38, 1123 - 2 * 38)  # A4 at 96 px per inch, less 1 cm margins


def test_the_report_leads_with_the_verdicts_on_page_one(page: Page, web_server: Server) -> None:
    """Patient, date, the verdict per protocol and what comes next on the first A4 page; the
    evidence after it; the audit identifiers (evaluation id, rule set hashes) at the end. The
    report was 35 pages for this patient before issue 19 (20 when the issue was written)."""
    page.goto(web_server.base + SSC_FORM)
    fill(page, ssc(ASTIS_CANDIDATE))
    page.fill("#f-patient_id", "H-42")
    evaluate(page)
    evaluation_id = page.url.rsplit("=", 1)[1]
    page.get_by_role("link", name="Printable report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Eligo eligibility report")
    page.emulate_media(media="print")
    width, height = A4_CONTENT_PX
    page.set_viewport_size({"width": width, "height": height})
    first = page.locator("section.first-page")
    expect(first).to_contain_text("Name or hospital number")
    expect(first).to_contain_text("Pseudonym recorded")
    expect(first.get_by_role("row", name="ASTIS")).to_contain_text("Candidate")
    expect(first.locator("table.glance tbody tr")).to_have_count(8)  # every assessed protocol
    bottom = first.evaluate("e => e.getBoundingClientRect().bottom + window.scrollY")
    assert bottom <= height, f"page 1 runs to {bottom}px of {height}px"
    expect(page.locator("#evaluation-id")).to_have_text(evaluation_id)
    order = page.evaluate(
        """() => ['.first-page', '.evidence', '.values-used', '.audit']
             .map(s => document.querySelector(s).getBoundingClientRect().top)"""
    )
    assert order == sorted(order)
    versions = page.get_by_role("table", name="Rule set versions used")
    expect(versions.get_by_role("row", name="hsct-ssc-astis")).to_contain_text("2.1.0")
    expect(versions.get_by_role("row", name="hsct-ssc-astis")).to_contain_text("draft")
    expect(page.get_by_role("button", name="Print this report")).to_be_hidden()
    margins = dict.fromkeys(("top", "right", "bottom", "left"), A4_MARGIN)
    pdf = page.pdf(path=artefact("report.pdf"), format="A4", margin=margins)  # type: ignore[arg-type]
    assert pdf.startswith(b"%PDF")
    pages = pdf_pages(pdf)
    artefact("report-pages.txt").write_text(f"{pages}\n")
    assert pages <= 12, pages


def pdf_pages(pdf: bytes) -> int:
    """Page objects of a PDF Chromium printed (`/Type /Page`, not the `/Pages` tree)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


FRICTION_PX = {"form": 4188, "results-1280": 18553, "results-390": 45432}  # issue 19's figures


@pytest.mark.parametrize("width", [1280, 390])
def test_the_ssc_pages_are_far_shorter_than_issue_19_measured(
    page: Page, web_server: Server, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(web_server.base + SSC_FORM)
    form = page.evaluate("() => document.documentElement.scrollHeight")
    page.screenshot(path=artefact(f"form-{width}.png"), full_page=True)
    fill(page, ssc(ASTIS_CANDIDATE))
    evaluate(page)
    results = page.evaluate("() => document.documentElement.scrollHeight")
    page.screenshot(path=artefact(f"results-{width}.png"), full_page=True)
    artefact(f"heights-{width}.txt").write_text(f"form {form}\nresults {results}\n")
    if width == 1280:
        assert form < FRICTION_PX["form"], form
    assert results < FRICTION_PX[f"results-{width}"] / 2, results


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_pass_axe(axe_page: Page, web_server: Server, width: int) -> None:
    page = axe_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(web_server.base)
    found = {"start": axe_violations(page)}
    page.get_by_role("button", name="Systemic sclerosis (SSc)").click()
    page.wait_for_url("**/?disease=ssc")
    for group in page.locator("details.more").all():  # the folded values too
        group.locator("summary").click()
    found["ssc work-up"] = axe_violations(page)
    fill(page, {**ssc(ASTIS_CANDIDATE), "lvef_percent": 150})
    page.get_by_role("button", name="Evaluate").click()
    found["errors"] = axe_violations(page)
    page.fill("#f-lvef_percent", "60")
    evaluate(page)
    found["results"] = axe_violations(page)
    panel(page, "hsct-ssc-astis").locator("details.detail > summary").click()
    found["results, a protocol's detail open"] = axe_violations(page)
    page.get_by_role("link", name="Printable report").click()
    found["report"] = axe_violations(page)
    page.emulate_media(media="print")
    found["report, printed"] = axe_violations(page)
    page.emulate_media(media="screen")
    # undecided: to confirm apart from to measure, a derived value, shared criteria
    page.goto(web_server.base + SSC_FORM)
    fill(page, {"prior_cyclophosphamide_iv_g": 3})
    evaluate(page)
    found["undecided"] = axe_violations(page)
    page.goto(web_server.base + "/?disease=sle")
    found["sle work-up"] = axe_violations(page)
    problems = {name: describe(v) for name, v in found.items() if v}
    assert not problems, problems


def test_narrow_screens_do_not_scroll_sideways(page: Page, web_server: Server) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(web_server.base + SSC_FORM)
    fill(page, ssc(ASTIS_CANDIDATE))
    evaluate(page)
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 390, f"page is {overflow}px wide on a 390px screen"
