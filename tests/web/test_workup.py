"""A clinician's form (issue 19 item 4) over HTTP: the disease first, then only the values that
decide its protocols; a patient identifier kept only as a pseudonym; no UCUM or FHIR jargon;
results that say per protocol why it is ruled out and what comes next; a report that leads
with them and ends with the audit identifiers."""

from __future__ import annotations

import html as html_lib
import logging
import re

import pytest
from fastapi.testclient import TestClient

from app.db.models import Evaluation
from app.engine.model import RuleBase
from app.security import pseudonym
from app.settings import DEV_PSEUDONYM_KEY
from app.web import view
from tests.astis_patients import ASTIS_CANDIDATE
from tests.web.conftest import form_fields, sessions
from tests.web.test_pages import _post

SLE_ONLY = ("sledai_2k", "lupus_nephritis_class", "cns_lupus_recent", "mmf_failed")
SSC_ONLY = ("mrss", "ssc_subtype", "dlco_percent_predicted", "pvr_wood_units")


def _fields(html: str) -> set[str]:
    form = html[html.index('<form method="post" action="/" ') :]
    names = set(re.findall(r'<(?:input|select|textarea)[^>]*\bname="([^"]+)"', form))
    hidden = set(re.findall(r'<input type="hidden" name="([^"]+)"', form))
    return {n for n in names - hidden if not n.endswith(".unit")}


def test_the_form_asks_for_the_disease_first(development: TestClient) -> None:
    html = development.get("/").text
    assert "Start with the disease" in html
    assert '<form method="post" action="/" ' not in html  # no values before the disease
    for value, words in (("ssc", "Systemic sclerosis (SSc)"), ("sle", "Systemic lupus")):
        assert f'name="disease" value="{value}" class="primary">{words}' in html
    assert 'href="/?disease=all"' in html  # an overlap: every field
    assert "Load a patient from a FHIR R4 bundle" in html  # a record needs no choice


def test_an_ssc_work_up_shows_only_what_decides_ssc_protocols(
    development: TestClient, shipped_rules: RuleBase
) -> None:
    ssc, sle, every = (
        _fields(development.get(f"/?disease={d}").text) for d in ("ssc", "sle", "all")
    )
    deciding = {
        f
        for r in shipped_rules.rulesets.values()
        if r.indication == "ssc"
        for c in (*r.deciding, *r.cautions)
        for f in c.features
    }
    assert ssc == (deciding - {"ssc_diagnosis"}) | {"patient_id"}  # the choice records SSc
    assert not ssc & set(SLE_ONLY)
    assert not sle & set(SSC_ONLY)
    assert "ssc_diagnosis" in sle  # SSc excludes from an SLE protocol: asked
    assert len(every) == len(shipped_rules.features) + 1  # `all`: every feature, and the id
    assert len(ssc) < len(every)
    html = development.get("/?disease=ssc").text
    titles = re.findall(r"<legend><h3>([^<]+)</h3></legend>", html)
    assert titles == [
        "Demographics and diagnosis",
        "Skin",
        "Lung",
        "Heart",
        "Kidney",
        "Laboratory values",
        "Prior treatment",
        "Comorbidities and safety",
        "To confirm (clinician judgement)",
    ]
    # what one protocol alone asks is folded, naming it; what several ask is in view
    skin = html[html.index('id="section-skin"') : html.index('id="section-lung"')]
    assert re.search(r'<details class="more" id="more-skin">\s*<summary>1 more value, ', skin)
    assert skin.index('id="f-mrss"') < skin.index("<details")
    assert skin.index("<details") < skin.index('id="f-trunk_skin_involvement"')
    assert "each asked by one protocol only (ASTIS)" in skin


def test_choosing_the_disease_records_its_diagnosis(development: TestClient) -> None:
    fields = {"disease": "ssc", **form_fields(ASTIS_CANDIDATE)}
    del fields["ssc_diagnosis"]
    location = _post(development, fields).headers["location"]
    record = development.get(f"/v1/evaluations/{location.split('=')[1]}").json()
    assert record["input"]["normalised"]["ssc_diagnosis"]["value"] is True
    assert "sle_diagnosis" not in record["input"]["normalised"]  # unknown: set apart
    html = development.get(location).text
    assert "Diagnosis recorded: Systemic sclerosis (SSc)." in html  # the form is SSc's again
    assert '<input type="hidden" name="disease" value="ssc">' in html
    assert "✓</span> Candidate" in html


def test_a_value_outside_the_work_up_is_kept_and_unfolded(development: TestClient) -> None:
    """A value entered or loaded that the chosen disease does not ask is never dropped from
    the form (posting it again would lose it): its field is shown, its group open."""
    fields = {"disease": "ssc", "sex": "female", "pao2_mmhg": "80"}
    html = development.get(_post(development, fields).headers["location"]).text
    assert re.search(r'<option value="female" selected>', html)
    lung = html[html.index('id="section-lung"') : html.index('id="section-heart"')]
    assert '<details class="more" id="more-lung" open>' in lung


def test_the_patient_identifier_is_stored_only_as_its_pseudonym(
    development: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    identifier = "MRN-7Q2X9-SMITH"
    with caplog.at_level(logging.DEBUG):
        answer = _post(development, {"disease": "ssc", "patient_id": identifier, "mrss": "20"})
    assert answer.status_code == 303
    assert identifier not in answer.headers["location"]
    assert all(identifier not in r.getMessage() for r in caplog.records)
    evaluation_id = answer.headers["location"].split("=")[1]
    with sessions(development)() as session:
        row = session.get(Evaluation, evaluation_id)
        assert row is not None
        expected = pseudonym(DEV_PSEUDONYM_KEY.encode(), identifier)  # as the API's patient_id
        assert row.patient_pseudonym == expected
        stored = repr((row.input_received, row.input_normalised, row.result))
        assert identifier not in stored
    for path in (answer.headers["location"], f"/report/{evaluation_id}"):
        page = development.get(path).text
        assert identifier not in page
        assert expected[:16] in page  # the pseudonym says the identifier was recorded
    api = development.post(
        "/v1/evaluations", json={"features": {"mrss": 20}, "patient_id": identifier}
    ).json()
    record = development.get(f"/v1/evaluations/{api['id']}").json()
    assert record["patient_pseudonym"] == expected  # one patient, linked across channels


def test_a_too_long_identifier_is_an_error_at_its_field_and_kept(development: TestClient) -> None:
    long = "x" * 257
    answer = _post(development, {"disease": "ssc", "patient_id": long, "mrss": "20"})
    assert answer.status_code == 422
    assert '<a href="#f-patient_id">Patient identifier: too long: at most 256' in answer.text
    assert f'value="{long}"' in answer.text  # shown back in this response only, to correct


# UCUM and FHIR a clinician should never read: curly annotations, bracketed units, UCUM's
# year `a`, element paths. Citation markers like "[astis-2014]" are words, not units.
JARGON = re.compile(
    r"\{[^}]*\}|\w\[[^\]]*\]|\[[^\]]*'[^\]]*\]|\d a\b|Patient\.\w|Observation\.\w|UCUM"
)


def _read(html: str) -> str:
    """What a clinician reads: text outside tags, scripts, attribute values and <code>."""
    body = html[html.index("<body") :]
    body = re.sub(r"<code[^>]*>.*?</code>", " ", body, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", body))


def test_no_ucum_or_fhir_jargon_in_what_the_clinician_reads(development: TestClient) -> None:
    pages = [development.get(f"/?disease={d}").text for d in ("ssc", "sle", "all")]
    bad = {"disease": "ssc", "age_years": "200", "pvr_wood_units": "99", "ecog": "1.5"}
    errors = _post(development, bad)
    assert errors.status_code == 422
    pages.append(errors.text)
    location = _post(development, {"disease": "ssc", **form_fields(ASTIS_CANDIDATE)}).headers[
        "location"
    ]
    pages += [
        development.get(location).text,
        development.get(location.replace("/?evaluation=", "/report/")).text,
    ]
    for page in pages:
        found = JARGON.findall(_read(page))
        assert not found, found
    assert "200 years is outside the plausible range 0–120 years" in errors.text
    assert "99 Wood units is outside" in errors.text
    assert "derived from Patient.birthDate" not in pages[0]
    assert view.plain("Age (derived from Patient.birthDate), as counted.") == "Age, as counted."


def _glance_row(html: str, name: str) -> str:
    table = html[html.index('<table class="glance">') :]
    start = table.index(f">{name}<")  # a link on the page, plain text in the report
    return table[start : table.index("</tr>", start)]


def test_the_summary_says_why_ruled_out_and_what_comes_next(development: TestClient) -> None:
    fields = {"disease": "ssc", "age_years": "45", "prior_cyclophosphamide_iv_g": "3"}
    html = development.get(_post(development, fields).headers["location"]).text
    assert 'Ruled out because</th><th scope="col">To measure</th>' in html
    upside = _glance_row(html, "UPSIDE")
    assert "Ruled out" in upside
    assert "Prior alkylating agent, TBI or TLI yes (excluded when yes)" in upside
    scot = _glance_row(html, "SCOT")
    assert '<a href="#f-dlco_percent_predicted">DLCO</a>' in scot  # to measure, to its field
    assert '<a href="#f-severe_comorbidity">Severe concomitant disease</a>' in scot
    assert "(goes on if no)" in scot
    # the detail of each protocol is folded under its heading
    panel = html[html.index('id="rs-hsct-ssc-scot"') :]
    assert re.search(r'<details class="detail">\s*<summary>Why: ', panel)
    assert panel.index("<details") < panel.index('<table class="criteria">')


def test_the_report_leads_with_the_verdicts_and_ends_with_the_audit(
    development: TestClient,
) -> None:
    fields = {"disease": "ssc", "patient_id": "H-1", **form_fields(ASTIS_CANDIDATE)}
    location = _post(development, fields).headers["location"]
    evaluation_id = location.split("=")[1]
    report = development.get(f"/report/{evaluation_id}").text
    order = [
        'class="first-page"',
        "Name or hospital number:",
        "Pseudonym recorded:",
        '<table class="glance">',
        'class="evidence"',
        'class="values-used"',
        'class="audit"',
        f'<code id="evaluation-id">{evaluation_id}</code>',
        "Rule set versions used",
    ]
    at = [report.index(marker) for marker in order]
    assert at == sorted(at), order
    first = report[: report.index('class="evidence"')]
    assert "✓</span> Candidate" in _glance_row(first, "ASTIS")
    assert "sha256:" not in first  # hashes are for the audit, last
    assert 'href="#f-' not in report  # the report has no fields to link to
    references = re.findall(r'<li id="ref-([^"]+)">', report)
    assert references
    assert len(references) == len(set(references))  # each once
