"""One vocabulary (app/engine/words.py) for the words a clinician reads: the form's badges and
still-open counts, its printed report, and the CDS Hooks cards say a decision in the same
words. Real decisions, recorded through the form over HTTP (development mode); the words
expected are computed from the vocabulary, never written out here."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cds import cards
from app.engine import words
from app.engine.model import RuleBase
from app.engine.present import DecisionOut
from app.main import create_app
from app.settings import Settings
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES
from tests.databases import app_database
from tests.web.conftest import csrf_of, form_fields

# Between them every status: a candidate, undecided ones (values to measure, confirmations),
# ruled out, not indicated, and protocols set apart as not assessed.
PATIENTS: dict[str, dict[str, Any]] = {
    "candidate": ASTIS_CANDIDATE,
    "unconfirmed": {k: v for k, v in ASTIS_CANDIDATE.items() if k != "severe_comorbidity"},
    "ssc only": {"ssc_diagnosis": True},
    "pregnant": {**ASTIS_CANDIDATE, "pregnant": True},
    "sle, not ssc": {"sle_diagnosis": True, "ssc_diagnosis": False},
}
LINKS = cards.Links(form="https://eligo.example/?evaluation=e", rulesets="https://eligo.example/r")


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Any, ...]]]:
    """Per patient: the recorded decisions (the API's JSON), the form page and the report."""
    with app_database(tmp_path_factory.mktemp("words")) as url:
        settings = Settings(rules_dir=SHIPPED_RULES, database_url=url, auth=False)
        with TestClient(create_app(settings)) as client:
            made = []
            for patient in PATIENTS.values():
                token = csrf_of(client.get("/").text)
                fields = {**form_fields(patient), "csrf_token": token}
                location = client.post("/", data=fields, follow_redirects=False).headers["location"]
                evaluation_id = location.split("=", 1)[1]
                record = client.get(f"/v1/evaluations/{evaluation_id}").json()
                page = html.unescape(client.get(location).text)
                report = html.unescape(client.get(f"/report/{evaluation_id}").text)
                made.append((record["result"]["results"], page, report))
            yield made


def _panel(page: str, ruleset: str) -> str:
    start = page.index('<article class="panel status-')
    start = page.index(f'id="rs-{ruleset}"', start)
    return page[start : page.index("</article>", start)]


def _badge(result: DecisionOut) -> str:
    """The form's badge for a decision, in the vocabulary's words and symbol."""
    open_ = (bool(result["missing"]), bool(result.get("to_confirm")))
    said = words.capitalised(words.verdict(result["status"], *open_))
    return f'<span aria-hidden="true">{words.SYMBOLS[result["status"]]}</span> {said}'


def _name(result: DecisionOut) -> str:
    """A protocol's short name, as the summary table and the cards give it."""
    return cards.short_name(result["ruleset"])


def _shown(results: list[DecisionOut]) -> list[DecisionOut]:
    """The decisions shown as panels: assessed, and indicated."""
    return [r for r in results if r["assessed"] and r["status"] != "not_indicated"]


def test_every_status_is_among_the_patients(decided: list[tuple[Any, ...]]) -> None:
    statuses = {r["status"] for results, _, _ in decided for r in results}
    assert statuses == set(words.STATUS_WORDS)
    opens = {
        (bool(r["missing"]), bool(r["to_confirm"]))
        for results, _, _ in decided
        for r in _shown(results)
        if r["status"] == "indeterminate"
    }
    assert opens == set(words.OPEN)  # each way of being undecided, at least once
    assert any(not r["assessed"] for results, _, _ in decided for r in results)


def test_the_form_and_its_report_show_the_vocabularys_status_words(
    decided: list[tuple[Any, ...]],
) -> None:
    for results, page, report in decided:
        for result in _shown(results):
            ruleset = result["ruleset"]["id"]
            for shown in (page, report):
                panel = _panel(shown, ruleset)
                assert _badge(result) in panel, (ruleset, panel[:400])
            # The summary's row for the protocol, in the form and in the report, says the same.
            for shown in (page, report):
                table = shown[shown.index('<table class="glance">') :]
                row = table[table.index(f">{_name(result)}<") :]
                assert _badge(result) in row[: row.index("</tr>")], (ruleset, row[:400])
            if result["missing"]:
                assert f"<h5>{words.MEASURE_NEXT}</h5>" in _panel(page, ruleset)
            if result["to_confirm"]:
                assert f"<h5>{words.TO_CONFIRM}</h5>" in _panel(page, ruleset)
                assert f"({words.GOES_ON_IF} " in _panel(page, ruleset)
            # Every criterion's result in the form's detail; in the report, the criteria that
            # rule the patient out (the others are grouped under headings there).
            reasons = set(result["reasons"])
            for criterion in result["criteria"]:
                said = f"</span> {words.RESULT_WORDS[criterion['result']]}</span>"
                assert said in _panel(page, ruleset)
                if criterion["id"] in reasons:
                    assert said in _panel(report, ruleset)


def test_not_indicated_and_not_assessed_say_the_vocabularys_words(
    decided: list[tuple[Any, ...]], shipped_rules: RuleBase
) -> None:
    for results, page, report in decided:
        if any(r["status"] == "not_indicated" for r in results):
            heading = words.capitalised(words.STATUS_WORDS["not_indicated"])
            assert f'<h3 id="ni-title">{heading}</h3>' in page
        for result in (r for r in results if not r["assessed"]):
            ruleset = shipped_rules.rulesets[result["ruleset"]["id"]]
            own = words.INDICATIONS[ruleset.indication]
            others = " and ".join(words.INDICATIONS[i] for i in result["not_assessed"]["recorded"])
            message = words.not_assessed(own, others)
            assert result["not_assessed"]["message"] == message
            assert f'<li id="rs-{ruleset.id}">{ruleset.title}: {message}</li>' in page
            for shown in (page, report):
                assert f'<h3 id="na-title">{words.NOT_ASSESSED} (' in shown
            therapy = words.THERAPIES[ruleset.therapy]
            assert f'<span id="rs-{ruleset.id}">{_name(result)} ({therapy})</span>' in report


def test_the_cards_say_what_the_form_says(
    decided: list[tuple[Any, ...]], shipped_rules: RuleBase
) -> None:
    labels = {f.id: f.spec.label for f in shipped_rules.features.values()}
    seen = set()
    for results, page, _ in decided:
        for card in cards.cards(results, labels, LINKS):
            group = [r for r in results if r["ruleset"]["id"] in card.rulesets]
            best = next(s for s in cards.WORDS if any(r["status"] == s for r in group))
            seen.add(best)
            word = words.STATUS_WORDS[best]
            assert f": {word} under " in card.card["summary"]
            # The form's badge for the same protocols starts with the same word.
            badges = [_badge(r) for r in group if r["status"] == best]
            assert all(words.capitalised(word) in b for b in badges)
            assert all(b in page for b in badges)
            if best == "indeterminate":
                missing = {f for r in group for f in r["missing"]}
                confirm = {c["feature"] for r in group for c in r["to_confirm"]}
                assert card.card["summary"].endswith(words.still_open(len(missing), len(confirm)))
            detail = card.card["detail"]
            for result in group:
                name = re.escape(cards.short_name(result["ruleset"]))
                line = re.search(rf"^- \*\*{name}\*\* \([^)]*\): (.*)$", detail, re.M)
                assert line, (name, detail)
                assert line.group(1).startswith(words.STATUS_WORDS[result["status"]])
            if any(r["missing"] for r in group if r["status"] == "indeterminate"):
                assert f"*{words.MEASURE_NEXT}:*" in detail
            if any(r["to_confirm"] for r in group if r["status"] == "indeterminate"):
                assert f"*{words.TO_CONFIRM}:*" in detail
    assert seen == set(cards.WORDS)  # candidate, undecided and ruled out cards, all checked
