"""Cards from real decisions of the shipped rules: which therapies get one, the indicator, the
summary's limit and wording, and what the Markdown detail says and how long it may be (over
the Synthea records and the hand-written patients)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

from app.cds.cards import DETAIL_LIMIT, SUMMARY_LIMIT, Links, Named, cards, short_name, summary
from app.engine import present
from app.engine.derive import derive
from app.engine.inputs import FeatureValue, normalise
from app.engine.model import RuleBase
from app.engine.present import DecisionOut
from app.engine.run import evaluate_all, select, set_apart
from app.services.evaluations import PatientInput, patient_values
from tests.astis_patients import ASTIS_CANDIDATE
from tests.fhir.bundles import SYNTHEA, WRITTEN_ON, alive_on, sle_bundle, ssc_bundle


def partial(payload: dict[str, Any]) -> DecisionOut:
    """A hand-made decision with only the keys the code under test reads."""
    return cast(DecisionOut, payload)


LINKS = Links(form="https://eligo.example/?evaluation=e1", rulesets="https://eligo.example/r")


def _results(rules: RuleBase, features: dict[str, Any], ids: list[str]) -> list[DecisionOut]:
    values = derive(normalise(features, rules.features), rules.features)  # as the service does
    return [present.decision(d, rules) for d in evaluate_all(select(rules, ids), values)]


def _labels(rules: RuleBase) -> dict[str, str]:
    return {f.id: f.spec.label for f in rules.features.values()}


def test_not_indicated_therapies_get_no_card(shipped_rules: RuleBase) -> None:
    patient = {**ASTIS_CANDIDATE, "sle_diagnosis": False}
    results = _results(shipped_rules, patient, list(shipped_rules.rulesets))
    assert {r["status"] for r in results if "-sle" in r["ruleset"]["id"]} == {"not_indicated"}
    made = cards(results, _labels(shipped_rules), LINKS)
    assert {c.card["source"]["topic"]["code"] for c in made} == {"hsct", "msc", "car_t"}
    assert all("sle" not in r for c in made for r in c.rulesets)
    assert all(len(c.card["summary"]) <= SUMMARY_LIMIT for c in made)


def test_a_candidate_is_info_and_a_caution_makes_it_a_warning(shipped_rules: RuleBase) -> None:
    clear = _results(shipped_rules, ASTIS_CANDIDATE, ["hsct-ssc-astis"])
    assert clear[0]["status"] == "eligible"
    (card,) = cards(clear, _labels(shipped_rules), LINKS)
    assert card.card["indicator"] == "info"
    assert card.card["summary"] == "Autologous HSCT for SSc: candidate under ASTIS"
    older = _results(shipped_rules, {**ASTIS_CANDIDATE, "age_years": 62}, ["hsct-ssc-astis"])
    assert older[0]["status"] == "eligible"  # ASTIS includes up to 65, EBMT cautions over 60
    (card,) = cards(older, _labels(shipped_rules), LINKS)
    assert card.card["indicator"] == "warning"
    assert card.card["detail"].startswith(
        "- **ASTIS** (draft): candidate; caution: Age over 60 years (patient: Age 62 years)"
    )


def test_ruled_out_says_why_with_the_patients_value(shipped_rules: RuleBase) -> None:
    results = _results(shipped_rules, {**ASTIS_CANDIDATE, "lvef_percent": 40}, ["hsct-ssc-astis"])
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    assert card.card["summary"] == "Autologous HSCT for SSc: ruled out under ASTIS"
    assert card.card["indicator"] == "info"
    (line,) = [x for x in card.card["detail"].splitlines() if "ruled out" in x]
    assert line == "- **ASTIS** (draft): ruled out: LVEF below 45 % (patient: LVEF 40 %)"
    assert card.card["links"] == [{"label": "Open in Eligo", "url": LINKS.form, "type": "absolute"}]
    assert card.card["source"]["url"] == "https://eligo.example/r/hsct-ssc-astis"


def test_a_card_links_to_the_smart_launch_when_eligo_may_be_launched(
    shipped_rules: RuleBase,
) -> None:
    """CDS Hooks: a `smart` link's url is the launch URL; the EHR adds `iss` and `launch`."""
    results = _results(shipped_rules, ASTIS_CANDIDATE, ["hsct-ssc-astis"])
    launch = "https://eligo.example/smart/launch"
    (card,) = cards(results, _labels(shipped_rules), replace(LINKS, smart=launch))
    assert card.card["links"] == [
        {"label": "Open in Eligo", "url": LINKS.form, "type": "absolute"},
        {"label": "Open in Eligo with the chart's record", "url": launch, "type": "smart"},
    ]


def test_undecided_lists_what_to_measure_in_words(shipped_rules: RuleBase) -> None:
    features = {k: v for k, v in ASTIS_CANDIDATE.items() if k != "dlco_percent_predicted"}
    results = _results(shipped_rules, features, ["hsct-ssc-astis"])
    assert results[0]["status"] == "indeterminate"
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    assert card.card["summary"].endswith("; 1 value to measure")  # as the form says it
    measure = next(x for x in card.card["detail"].splitlines() if "What to measure next" in x)
    assert shipped_rules.features["dlco_percent_predicted"].spec.label in measure


def test_summary_counts_protocols_when_their_names_do_not_fit(shipped_rules: RuleBase) -> None:
    hsct = [r for r in shipped_rules.rulesets if r.startswith("hsct-ssc")]
    results = _results(shipped_rules, {"ssc_diagnosis": True}, hsct)
    text = summary("hsct", "ssc", results)
    assert len(text) <= SUMMARY_LIMIT
    assert f"undecided under {len(hsct)} of {len(hsct)} protocols" in text


def test_short_names_and_markdown_escaping() -> None:
    ruleset: Named = {"id": "x", "title": "Something (ASTIS criteria)"}
    assert short_name(ruleset) == "ASTIS"
    assert short_name({"id": "plain-id", "title": "No brackets"}) == "plain-id"
    decision = partial(
        {
            "ruleset": {
                "id": "x",
                "title": "Some protocol (A *bold* [link] <b> criteria)",
                "version": "1",
                "therapy": "msc",
                "indication": "sle",
                "review_status": "draft",
            },
            "status": "indeterminate",
            "criteria": [],
            "cautions": [],
            "risks": [],
            "missing": ["some_feature"],
            "citations": [],
        }
    )
    (card,) = cards([decision], {"some_feature": "A_label"}, LINKS)
    detail = card.card["detail"]
    assert detail.startswith(r"- **A \*bold\* \[link\] \<b\>** (draft): undecided")
    assert r"A\_label" in detail


def _undecided(missing: list[str], confirm: list[str]) -> DecisionOut:
    """A decision as the API gives it, undecided by `missing` and `confirm` (feature ids)."""
    return partial(
        {
            "ruleset": {
                "id": "hsct-ssc-upside",
                "title": "Autologous HSCT (UPSIDE criteria)",
                "version": "2.0.0",
                "therapy": "hsct",
                "indication": "ssc",
                "review_status": "draft",
            },
            "status": "indeterminate",
            "criteria": [],
            "cautions": [],
            "risks": [],
            "missing": missing,
            "to_confirm": [
                {
                    "feature": f,
                    "label": f,
                    "question": f"Is {f} so?",
                    "description": "the source's words",
                    "proceeds_when": False,
                    "criteria": [],
                }
                for f in confirm
            ],
            "citations": [],
        }
    )


def test_the_summary_says_when_confirmations_are_what_is_open() -> None:
    only = summary("hsct", "ssc", [_undecided([], ["severe_comorbidity"])])
    assert only == "Autologous HSCT for SSc: undecided under UPSIDE; 1 to confirm"
    both = summary("hsct", "ssc", [_undecided(["a", "b"], ["c", "d"])])
    assert both.endswith("; 2 values to measure, 2 to confirm")
    many = [_undecided([f"m{i}" for i in range(40)], [f"c{i}" for i in range(9)])] * 12
    assert len(summary("hsct", "ssc", many)) <= SUMMARY_LIMIT
    recorded_before = partial({k: v for k, v in _undecided(["a"], []).items() if k != "to_confirm"})
    assert summary("hsct", "ssc", [recorded_before]).endswith("; 1 value to measure")


def test_what_to_confirm_is_listed_apart_from_what_to_measure(shipped_rules: RuleBase) -> None:
    results = _results(shipped_rules, {"ssc_diagnosis": True}, ["hsct-ssc-upside"])
    assert results[0]["status"] == "indeterminate"
    assert [c["feature"] for c in results[0]["to_confirm"]] == ["severe_comorbidity"]
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    assert card.card["summary"].endswith(", 1 to confirm")
    lines = card.card["detail"].splitlines()
    measure = next(x for x in lines if "*What to measure next:*" in x)
    assert shipped_rules.features["severe_comorbidity"].spec.label not in measure
    (confirm,) = [x for x in lines if "*To confirm (clinician judgement):*" in x]
    assert "Does the patient have a severe concomitant disease" in confirm
    assert confirm.endswith("(goes on if no)")


def test_a_shared_criterion_that_rules_out_says_where_it_comes_from(
    shipped_rules: RuleBase,
) -> None:
    results = _results(shipped_rules, {"ssc_diagnosis": True, "pregnant": True}, ["hsct-ssc-astis"])
    assert results[0]["reasons"] == ["pregnancy"]
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    (line,) = [x for x in card.card["detail"].splitlines() if "ruled out" in x]
    assert line == (
        "- **ASTIS** (draft): ruled out: Pregnancy (patient: Pregnant: yes), applies to all "
        "cellular therapies"
    )


def test_a_derived_value_says_why_it_holds(shipped_rules: RuleBase) -> None:
    patient = {"ssc_diagnosis": True, "prior_cyclophosphamide_iv_g": 3}
    results = _results(shipped_rules, patient, ["hsct-ssc-upside"])
    assert results[0]["status"] == "ineligible"
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    (line,) = [x for x in card.card["detail"].splitlines() if "ruled out" in x]
    assert (
        "(patient: Prior alkylating agent, TBI or TLI: yes, derived: Prior IV cyclophosphamide "
        "(total) \\> 0 g (cyclophosphamide is an alkylating agent))" in line
    )


def _patients(rules: RuleBase) -> Iterator[tuple[str, dict[str, FeatureValue]]]:
    """Every Synthea record as it is (no SSc or SLE: no card), with an SSc and with an SLE
    diagnosis added, on the day its record ends; the hand-written SSc and SLE patients; and
    patients of whom only the indication, or nothing, is known (every protocol undecided, with
    everything missing: the longest lists)."""
    features = rules.features
    for path in SYNTHEA:
        on = alive_on(path)
        mapped, _ = patient_values(PatientInput(fhir=json.loads(path.read_text())), features, on)
        for added in ({}, {"ssc_diagnosis": True}, {"sle_diagnosis": True}):
            yield f"{path.stem} {added}", derive({**mapped, **normalise(added, features)}, features)
    for name, bundle in (("ssc", ssc_bundle()), ("sle", sle_bundle())):
        yield (
            name,
            patient_values(PatientInput(fhir=bundle), features, WRITTEN_ON)[0],
        )
    for known in ({}, {"ssc_diagnosis": True}, {"sle_diagnosis": True}):
        yield str(known), derive(normalise(known, features), features)


def test_details_are_short_and_in_clinicians_words(shipped_rules: RuleBase) -> None:
    made = 0
    for name, values in _patients(shipped_rules):
        results = [
            present.decision(d, shipped_rules)
            for d in evaluate_all(select(shipped_rules, None), values)
        ]
        for card in cards(results, _labels(shipped_rules), LINKS):
            detail, made = card.card["detail"], made + 1
            assert len(detail.encode()) <= DETAIL_LIMIT, (name, len(detail.encode()))
            assert "`" not in detail, (name, detail)  # no rule expression, no feature id
            assert not re.search(r"\b[a-z0-9]+(\\?_[a-z0-9]+)+\b", detail), (name, detail)
            assert not re.search(r"\{|mm\[Hg\]|\d a\b", detail), (name, detail)  # no UCUM code
            assert detail.endswith(f"[open in Eligo]({LINKS.form})")
    assert made >= 30


def test_a_detail_that_would_not_fit_names_less_and_stays_bounded(
    shipped_rules: RuleBase,
) -> None:
    """Twelve protocols undecided on everything: the lists shrink to counts, the verdicts are
    cut at a line with an ellipsis, and the link to the full answer stays."""
    (one,) = _results(shipped_rules, {"ssc_diagnosis": True}, ["hsct-ssc-astis"])
    many = [
        partial({**one, "ruleset": {**one["ruleset"], "title": f"P (Protocol {i})"}})
        for i in range(40)
    ]
    (card,) = cards(many, _labels(shipped_rules), LINKS)
    detail = card.card["detail"]
    assert len(detail.encode()) <= DETAIL_LIMIT
    assert "\n- …\n\n" in detail
    assert detail.endswith(f"[open in Eligo]({LINKS.form})")


def test_protocols_set_apart_as_not_assessed_get_no_card(shipped_rules: RuleBase) -> None:
    """An SSc patient with SLE not recorded: the lupus protocols undecided for want of the
    diagnosis are set apart (as the service marks them), and no card speaks for them."""
    values = derive(
        normalise({"ssc_diagnosis": True}, shipped_rules.features), shipped_rules.features
    )
    decisions = evaluate_all(list(shipped_rules.rulesets.values()), values)
    results = [
        present.marked(
            present.decision(d, shipped_rules), present.not_assessed(d.ruleset, a) if a else None
        )
        for d, a in zip(decisions, set_apart(decisions), strict=True)
    ]
    apart = {r["ruleset"]["id"] for r in results if r.get("assessed") is False}
    assert apart == {"car-t-sle", "hsct-sle-burt-2006", "msc-sle-wang-2014"}
    made = cards(results, _labels(shipped_rules), LINKS)
    spoken_for = {r for c in made for r in c.rulesets}
    assert spoken_for.isdisjoint(apart)
    # The nephritis trial rules an SSc patient out whatever the SLE: assessed, and carded.
    assert "msc-sle-nephritis-nct03580291" in spoken_for
    assert {c.card["source"]["topic"]["code"] for c in made} == {"hsct", "msc", "car_t"}


def test_the_source_says_how_far_the_least_reviewed_rule_set_is_reviewed(
    shipped_rules: RuleBase,
) -> None:
    """The label followed the shipped rules ("draft") whatever the rule sets said: a locally
    approved protocol beside a draft one is still a card a clinician must read as draft."""
    results = _results(shipped_rules, ASTIS_CANDIDATE, ["hsct-ssc-astis", "hsct-ssc-scot"])
    assert {r["ruleset"]["review_status"] for r in results} == {"draft"}  # as shipped

    def reviewed(result: DecisionOut, status: str) -> DecisionOut:
        ref = {**result["ruleset"], "review_status": status}
        return partial({**result, "ruleset": ref})

    label = {
        statuses: cards(
            [reviewed(r, s) for r, s in zip(results, statuses, strict=True)],
            _labels(shipped_rules),
            LINKS,
        )[0].card["source"]["label"]
        for statuses in [("draft", "draft"), ("approved", "in_review"), ("approved", "approved")]
    }
    assert (
        label[("draft", "draft")] == "Eligo eligibility rules (draft, need local clinical review)"
    )
    assert label[("approved", "in_review")] == "Eligo eligibility rules (in local clinical review)"
    assert label[("approved", "approved")] == "Eligo eligibility rules (approved locally)"
