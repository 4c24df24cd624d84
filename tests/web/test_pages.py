"""The form over HTTP in the quick start's development mode: decide, show, keep what was typed,
refuse forged posts, load FHIR, open a recorded evaluation and its report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.models import Evaluation
from app.main import create_app
from app.settings import Settings
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES
from tests.databases import app_database
from tests.fhir.bundles import ssc_bundle
from tests.web.conftest import csrf_of, form_fields, sessions


def _count(client: TestClient) -> int:
    with sessions(client)() as session:
        return int(session.scalar(select(func.count()).select_from(Evaluation)) or 0)


def _post(client: TestClient, fields: dict[str, str], path: str = "/") -> httpx.Response:
    token = csrf_of(client.get("/").text)
    answer: httpx.Response = client.post(
        path, data={**fields, "csrf_token": token}, follow_redirects=False
    )
    return answer


def _panel(html: str, ruleset: str) -> str:
    start = html.index(f'id="rs-{ruleset}"')
    return html[start : html.index("</article>", start)]


def test_the_form_is_generated_from_the_catalogue_and_announces_development(
    development: TestClient,
) -> None:
    page = development.get("/?disease=all")  # every field (the disease-first view: test_workup)
    assert page.status_code == 200
    html = page.text
    for heading in ("Demographics and diagnosis", "Lung", "Heart", "Kidney", "Prior treatment"):
        assert f"<h3>{heading}</h3>" in html
    assert 'id="f-dlco_percent_predicted"' in html
    assert '<label for="f-lvef_percent">LVEF</label>' in html
    assert '<option value="kPa">kPa</option>' in html  # PaO2's other unit
    assert "Development mode:" in html
    assert "novalidate" in html
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert "eligo-csrf" in page.headers["set-cookie"]
    assert "SameSite=strict" in page.headers["set-cookie"]


def test_a_clear_candidate_is_a_candidate_and_recorded(development: TestClient) -> None:
    answer = _post(development, form_fields(ASTIS_CANDIDATE))
    assert answer.status_code == 303
    location = answer.headers["location"]
    evaluation_id = re.fullmatch(r"/\?evaluation=([0-9a-f-]{36})", location)
    assert evaluation_id
    html = development.get(location).text
    astis = _panel(html, "hsct-ssc-astis")
    assert "✓</span> Candidate" in astis
    assert "86.26 mmHg (given as 11.5 kPa)" in astis
    dlco_row = astis[astis.index("DLCO below 40") :][:2000]
    assert '<span aria-hidden="true">○</span> not met</span>' in dlco_row
    assert 'role="img" aria-label="dlco_percent_predicted: patient 55 %' in astis
    assert "https://doi.org/10.1136/rmdopen-2017-000533" in astis
    assert "review status <strong>draft</strong> (needs local clinical review)" in astis
    # the form is filled in again as typed, units included
    assert re.search(r'id="f-pao2_mmhg"[^>]*value="11.5"', html)
    assert '<option value="kPa" selected>' in html
    record = development.get(f"/v1/evaluations/{evaluation_id.group(1)}").json()
    assert record["channel"] == "form"
    assert record["clinician"] is None  # development mode: nobody signed in


def test_without_dlco_astis_is_undecided_and_dlco_is_what_to_measure(
    development: TestClient,
) -> None:
    fields = form_fields(ASTIS_CANDIDATE)
    del fields["dlco_percent_predicted"]
    location = _post(development, fields).headers["location"]
    astis = _panel(development.get(location).text, "hsct-ssc-astis")
    assert "Undecided: values missing" in astis
    measure = astis[astis.index("What to measure next") :]
    assert '<a href="#f-dlco_percent_predicted">DLCO</a>' in measure


def test_an_empty_form_is_recorded_and_says_nothing_was_entered(development: TestClient) -> None:
    answer = _post(development, {})
    assert answer.status_code == 303  # decided and recorded, as the API does
    html = development.get(answer.headers["location"]).text
    banner = "Nothing was entered for this patient, so every verdict is undecided."
    assert f'<p class="banner" role="status">{banner} Enter the values you have below' in html
    evaluation_id = answer.headers["location"].rsplit("=", 1)[1]
    report = development.get(f"/report/{evaluation_id}").text
    assert f"{banner}</p>" in report  # the printed report does not point at a form
    known = _post(development, form_fields({"age_years": 45}))
    assert banner not in development.get(known.headers["location"]).text


def test_the_confirmations_close_the_work_up_one_radio_group_each(
    development: TestClient,
) -> None:
    """After comorbidities and safety, as a work-up ends (they came first before issue 19),
    highlighted apart, just before Evaluate."""
    html = development.get("/?disease=ssc").text
    form = html[html.index('<form method="post" action="/" ') :]
    assert form.index('id="section-comorbidities"') < form.index('id="section-confirmations"')
    section = form[form.index('id="section-confirmations"') : form.index('class="actions"')]
    assert "<h3>To confirm (clinician judgement)</h3>" in section
    question = "Does the patient have a severe concomitant disease or organ failure"
    assert f"<legend>{question}" in section
    radios = re.findall(r'<input type="radio" name="severe_comorbidity" value="(\w*)"', section)
    assert radios == ["", "no", "yes"]  # not yet assessed, the answer that goes on, the other
    assert re.search(
        r'name="severe_comorbidity" value="" id="f-severe_comorbidity" checked', section
    )
    assert "Asked by " in section
    assert "UPSIDE" in section


def test_confirmations_are_listed_apart_and_answered_in_one_click(
    development: TestClient,
) -> None:
    fields = {"ssc_diagnosis": "yes", "prior_cyclophosphamide_iv_g": "3"}
    location = _post(development, fields).headers["location"]
    html = development.get(location).text
    scot = _panel(html, "hsct-ssc-scot")
    assert "Undecided: values missing, confirmation needed" in scot
    confirm = scot[
        scot.index("To confirm (clinician judgement)") : scot.index("What to measure next")
    ]
    assert '<a href="#f-severe_comorbidity">Does the patient have a severe' in confirm
    measure = scot[scot.index("What to measure next") :]
    assert 'href="#f-severe_comorbidity"' not in measure[: measure.index("</ul>")]
    # UPSIDE is ruled out by a value nobody typed: it says it was derived, and why
    upside = _panel(html, "hsct-ssc-upside")
    assert "derived: Prior IV cyclophosphamide (total) &gt; 0 g (cyclophosphamide is an" in upside
    # the pregnancy criterion is shared by every cellular therapy and says so
    assert '<span class="scope">applies to all cellular therapies</span>:' in scot
    # the form below: the derived value beside its field, not typed into it
    field = html[html.index('id="field-prior_alkylating_or_irradiation"') :][:2500]
    assert "Taken as yes, derived: Prior IV cyclophosphamide" in field
    assert re.search(r'value="" id="f-prior_alkylating_or_irradiation" checked', field)
    # answered: recorded as the API's false, shown checked again, no longer to confirm
    again = _post(development, {**fields, "severe_comorbidity": "no"}).headers["location"]
    record = development.get(f"/v1/evaluations/{again.split('=')[1]}").json()
    assert record["input"]["normalised"]["severe_comorbidity"]["value"] is False
    html = development.get(again).text
    assert re.search(r'name="severe_comorbidity" value="no"\s*checked', html)
    assert 'href="#f-severe_comorbidity"' not in _panel(html, "hsct-ssc-scot")
    report = development.get(f"/report/{again.split('=')[1]}").text
    assert "<td>Severe concomitant disease</td><td>no</td><td>entered</td>" in report
    assert "<td>derived: Prior IV cyclophosphamide (total) &gt; 0 g" in report


def test_a_value_given_against_a_derivation_is_replaced_and_shown(
    development: TestClient,
) -> None:
    """ "No alkylating agent" beside 3 g of cyclophosphamide: decided with the implied "yes",
    and the results say that the clinician's "no" was replaced and why."""
    before = _count(development)
    fields = {"prior_cyclophosphamide_iv_g": "3", "prior_alkylating_or_irradiation": "no"}
    answer = _post(development, fields)
    assert answer.status_code == 303, answer.text
    page = development.get(answer.headers["location"]).text
    assert "it replaces the value given, false" in page
    assert _count(development) == before + 1


def test_a_bad_confirmation_is_named_beside_it_and_the_rest_is_kept(
    development: TestClient,
) -> None:
    fields = {**form_fields(ASTIS_CANDIDATE), "severe_comorbidity": "maybe"}
    answer = _post(development, fields)
    assert answer.status_code == 422
    field = answer.text[answer.text.index('id="field-severe_comorbidity"') :][:3000]
    assert 'id="e-severe_comorbidity"' in field
    assert re.search(r'id="f-severe_comorbidity"[^>]*aria-invalid="true"', field)
    assert '<a href="#f-severe_comorbidity">Severe concomitant disease: choose yes' in answer.text
    assert re.search(r'id="f-age_years"[^>]*value="45"', answer.text)


def test_an_impossible_value_is_named_and_nothing_typed_is_lost(
    development: TestClient,
) -> None:
    before = _count(development)
    fields = {**form_fields(ASTIS_CANDIDATE), "lvef_percent": "150", "mrss": "lots"}
    answer = _post(development, fields)
    assert answer.status_code == 422
    html = answer.text
    assert _count(development) == before
    assert 'id="e-lvef_percent"' in html
    assert "150 % is outside the plausible range 5–90 %" in html
    assert "&#39;lots&#39; is not a number" in html
    assert re.search(r'id="f-lvef_percent"[^>]*value="150"', html)
    assert re.search(r'id="f-lvef_percent"[^>]*aria-invalid="true"', html)
    assert re.search(r'id="f-age_years"[^>]*value="45"', html)
    assert re.search(r'value="yes" checked', html)  # radios kept too
    assert '<a href="#f-lvef_percent">LVEF: 150 %' in html  # the summary links to the field


def test_forged_posts_are_refused_and_record_nothing(development: TestClient) -> None:
    fields = form_fields(ASTIS_CANDIDATE)
    development.get("/")
    no_token = development.post("/", data=fields, follow_redirects=False)
    assert no_token.status_code == 403
    assert "security token" in no_token.text
    token = csrf_of(development.get("/").text)
    wrong = development.post("/", data={**fields, "csrf_token": token[::-1]})
    assert wrong.status_code == 403
    other_site = development.post(
        "/",
        data={**fields, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert other_site.status_code == 403
    cross = development.post(
        "/",
        data={**fields, "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert cross.status_code == 403
    assert _count(development) == 0


def test_a_pasted_bundle_fills_the_form_and_says_where_values_came_from(
    development: TestClient,
) -> None:
    bundle = json.dumps(ssc_bundle(datetime.now(UTC).date()))
    token = csrf_of(development.get("/").text)
    answer = development.post(
        "/fhir",
        data={"csrf_token": token, "bundle": bundle},
        files={"bundle_file": ("", b"")},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:500]
    html = development.get(answer.headers["location"]).text
    assert "From the FHIR bundle" in html
    assert re.search(r'id="s-dlco_percent_predicted">From FHIR: Observation/[^<]+, \d{4}-', html)
    assert re.search(r"from Observation/[^<]+, \d{4}-\d\d-\d\d", html)  # in the criteria
    assert 'name="fhir_from"' in html


def test_resubmitting_a_fhir_filled_form_keeps_provenance_for_unchanged_values(
    development: TestClient,
) -> None:
    bundle = json.dumps(ssc_bundle(datetime.now(UTC).date()))
    token = csrf_of(development.get("/").text)
    first = development.post(
        "/fhir", data={"csrf_token": token, "bundle": bundle}, follow_redirects=False
    )
    first_id = first.headers["location"].split("=")[1]
    shown = development.get(f"/v1/evaluations/{first_id}").json()["input"]["normalised"]
    dlco = shown["dlco_percent_predicted"]
    fields = {"fhir_from": first_id, "csrf_token": token, "lvef_percent": "50"}
    fields["dlco_percent_predicted"] = str(dlco["given"]["value"]).removesuffix(".0")
    second = development.post("/", data=fields, follow_redirects=False)
    assert second.status_code == 303, second.text[:1000]
    record = development.get(f"/v1/evaluations/{second.headers['location'].split('=')[1]}").json()
    values = record["input"]["normalised"]
    assert values["dlco_percent_predicted"]["provenance"]["source"] == "fhir"
    assert values["lvef_percent"]["provenance"] == {"source": "input"}
    assert values["lvef_percent"]["value"] == 50
    # a mistake in such a form keeps the link to the bundle
    wrong = development.post("/", data={**fields, "lvef_percent": "150"})
    assert wrong.status_code == 422
    assert f'name="fhir_from" value="{first_id}"' in wrong.text


def test_bad_bundles_are_named_next_to_the_bundle(development: TestClient) -> None:
    token = csrf_of(development.get("/").text)
    cases = {
        '{"resourceType": "Bundle",\n "entry": [}': "not valid JSON: Expecting value at line 2",
        "[1, 2]": "not a FHIR Bundle",
        "": "paste a FHIR R4 Bundle",
        '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
        '{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": '
        '"http://loinc.org", "code": "10230-1"}]}, "valueQuantity": {"value": 150, '
        '"unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}, '
        '"effectiveDateTime": "2026-11-01"}}]}': "outside the plausible range",
    }
    for text, message in cases.items():
        answer = development.post("/fhir", data={"csrf_token": token, "bundle": text})
        assert answer.status_code == 422, text
        assert 'id="e-bundle"' in answer.text
        assert message in answer.text, answer.text[answer.text.find('id="e-bundle"') :][:300]
        assert "<details open>" in answer.text
    assert _count(development) == 0


def test_a_recorded_evaluation_opens_by_id_and_prints(development: TestClient) -> None:
    made = development.post("/v1/evaluations", json={"features": ASTIS_CANDIDATE}).json()
    page = development.get(f"/?evaluation={made['id']}")
    assert page.status_code == 200
    assert made["id"] in page.text
    assert "the API" in page.text
    report = development.get(f"/report/{made['id']}")
    assert report.status_code == 200
    html = report.text
    assert made["id"] in html
    assert "<td>hsct-ssc-astis</td>" not in html  # ids are in <code>
    assert "<code>hsct-ssc-astis</code>" in html
    assert "<td>2.0.0</td><td><code>sha256:" in html
    assert "<td>draft</td>" in html
    assert "Patient values" in html
    assert "11.5 kPa" in html


def test_an_answer_sent_as_a_summary_opens_with_every_criterion(development: TestClient) -> None:
    made = development.post(
        "/v1/evaluations?view=summary", json={"features": ASTIS_CANDIDATE}
    ).json()
    assert "criteria" not in made["results"][0]
    page = development.get(f"/?evaluation={made['id']}").text
    assert "answer cannot be shown" not in page
    panel = _panel(page, "hsct-ssc-astis")
    assert "11.5 kPa" in panel  # the trace: the value as given, from the recorded input


def test_a_record_that_cannot_be_proven_is_not_shown_as_results(development: TestClient) -> None:
    """Its re-rendering no longer matches the digest of what was sent: the page and the report
    say so and show no verdict panels, rather than an answer that was never given."""
    made = development.post("/v1/evaluations", json={"features": ASTIS_CANDIDATE}).json()
    before = development.get(f"/?evaluation={made['id']}").text
    assert 'id="rs-hsct-ssc-astis"' in before
    with sessions(development)() as session:
        row = session.get(Evaluation, made["id"])
        assert row is not None
        normalised = dict(row.input_normalised)
        normalised["age_years"] = {**normalised["age_years"], "value": 70.0}
        row.input_normalised = normalised
        session.commit()
    for path in (f"/?evaluation={made['id']}", f"/report/{made['id']}"):
        page = development.get(path)
        assert page.status_code == 200
        assert "answer cannot be shown" in page.text
        assert "differs from the one sent" in page.text
        assert 'id="rs-hsct-ssc-astis"' not in page.text
        assert "No therapy applies" not in page.text  # not an answer: none was shown
        verdict = page.text.split("<code>hsct-ssc-astis</code>", 1)[1].split("</tr>", 1)[0]
        assert "<td>eligible</td>" in verdict  # as decided and recorded, not as re-rendered


def test_unknown_evaluations_are_404_pages(development: TestClient) -> None:
    for path in (
        "/?evaluation=00000000-0000-0000-0000-000000000000",
        "/?evaluation=<script>",
        "/report/nope",
    ):
        page = development.get(path)
        assert page.status_code == 404
        assert "Evaluation not found" in page.text
        assert "<script>" not in page.text


def test_an_oversized_bundle_gets_a_page_and_records_nothing(tmp_path: Path) -> None:
    with app_database(tmp_path) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES, database_url=url, auth=False, max_body_bytes=64 * 1024
        )
        with TestClient(create_app(settings)) as client:
            token = csrf_of(client.get("/").text)
            answer = client.post("/fhir", data={"csrf_token": token, "bundle": "x" * 70_000})
            assert answer.status_code == 413
            assert answer.headers["content-type"].startswith("text/html")
            assert "Too large to send" in answer.text
            assert _count(client) == 0


def test_malformed_form_bodies_are_4xx(development: TestClient) -> None:
    token = csrf_of(development.get("/").text)
    broken = development.post(
        "/fhir",
        content=b'--xyz\r\nContent-Disposition: form-data; name="bundle"\r\n\r\nunterminated',
        headers={"content-type": "multipart/form-data"},  # no boundary: unreadable
    )
    assert broken.status_code == 400
    too_many = development.post(
        "/", data={"csrf_token": token, **{f"x{i}": "1" for i in range(600)}}
    )
    assert too_many.status_code == 400
    assert _count(development) == 0


def test_a_fractional_age_is_taken_in_completed_years_and_shown(development: TestClient) -> None:
    """Typed 65.5: ASTIS decides on 65 completed years (a candidate, as through the API and
    FHIR), the results say what was given, and the field keeps what was typed."""
    answer = _post(development, {**form_fields(ASTIS_CANDIDATE), "age_years": "65.5"})
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    html = development.get(location).text
    astis = _panel(html, "hsct-ssc-astis")
    assert "✓</span> Candidate" in astis
    assert "65 years (given as 65.5 years, counted in completed years)" in astis
    assert re.search(r'id="f-age_years"[^>]*value="65.5"', html)
    record = development.get(f"/v1/evaluations/{location.split('=')[1]}").json()
    assert [c["feature"] for c in record["result"]["corrections"]] == ["age_years"]


def test_a_fractional_count_is_named_beside_its_field(development: TestClient) -> None:
    before = _count(development)
    answer = _post(development, {**form_fields(ASTIS_CANDIDATE), "ecog": "1.5"})
    assert answer.status_code == 422
    assert "1.5 points is not a whole number; ECOG has no fractions" in answer.text
    assert _count(development) == before


def test_the_form_shows_units_in_words_never_ucum(development: TestClient) -> None:
    """`mmHg`, `µmol/L`, `years`; no `mm[Hg]`, `{count}` or `{1.73_m2}` a clinician would
    read (the selects' values are still UCUM codes, which the form posts)."""
    html = development.get("/?disease=all").text
    shown = re.sub(r'value="[^"]*"', "", html)
    for ucum in ("mm[Hg]", "{count}", "{score}", "{class}", "{ratio}", "{1.73_m2}", "[wood"):
        assert ucum not in shown, ucum
    assert '<option value="umol/L">µmol/L</option>' in html
    assert '<span class="unit">mmHg</span>' in html or ">mmHg</option>" in html
    assert "Plausible range 0–20." in html  # failed immunosuppressants: a plain count
