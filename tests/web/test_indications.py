"""Indications first, on the form and the printed report: an SSc patient's lupus protocols,
undecided only for want of an SLE diagnosis, are folded apart after the assessed ones."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.test_indications import FIRST
from tests.api.test_indications import SLE as APART
from tests.web.conftest import form_fields
from tests.web.test_pages import _post

HEADING = "Not assessed: no diagnosis recorded (3 protocols)"


def _glance(html: str) -> str:
    start = html.index('<table class="glance">')
    return html[start : html.index("</table>", start)]


def _apart(html: str) -> str:
    start = html.index('<section class="not-assessed"')
    return html[start : html.index("</section>", start)]


def test_an_ssc_patient_sees_the_lupus_protocols_folded_apart(development: TestClient) -> None:
    location = _post(development, form_fields(FIRST)).headers["location"]
    html = development.get(location).text
    glance, apart = _glance(html), _apart(html)
    for ruleset in APART:
        assert f"#rs-{ruleset}" not in glance  # not among the undecided ones
        assert f'<li id="rs-{ruleset}">' in apart
    assert "#rs-msc-sle-nephritis-nct03580291" in glance  # ruled out whatever the SLE
    assert "#rs-hsct-ssc-astis" in glance
    assert f'<details>\n      <summary><h3 id="na-title">{HEADING}</h3></summary>' in apart
    assert "no SLE diagnosis recorded (the patient has SSc recorded)" in apart
    # The page is the SSc work-up now, which has no SLE field: the box says where one is.
    assert 'id="f-sle_diagnosis"' not in html
    assert "whose diagnosis this work-up does not ask" in apart
    assert '<a href="/?disease=all">open the form with every field</a>' in apart
    assert "Record that diagnosis" not in apart
    assert html.index('class="therapy"') < html.index('class="not-assessed"')
    assert "No diagnosis is recorded" not in html
    report = development.get(location.replace("/?evaluation=", "/report/")).text
    assert HEADING in _apart(report)
    assert all(f"#rs-{ruleset}" not in _glance(report) for ruleset in APART)


def test_with_no_diagnosis_the_page_asks_for_it_first(development: TestClient) -> None:
    known = {k: v for k, v in FIRST.items() if k != "ssc_diagnosis"}
    location = _post(development, form_fields(known)).headers["location"]
    html = development.get(location).text
    assert 'id="no-diagnosis"' in html
    assert "Record the diagnosis first" in html
    assert 'class="not-assessed"' not in html
    assert all(f"#rs-{ruleset}" in _glance(html) for ruleset in APART)  # all undecided
    assert "Start with the disease" in development.get("/").text  # the form says so too
