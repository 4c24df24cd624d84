"""Cards from real decisions of the shipped rules: which therapies get one, the indicator, the
summary's limit and wording, and what the Markdown detail says."""

from __future__ import annotations

from typing import Any, cast

from app.cds.cards import SUMMARY_LIMIT, Links, Named, _value, cards, short_name, summary
from app.engine import present
from app.engine.derive import derive
from app.engine.inputs import normalise
from app.engine.model import RuleBase
from app.engine.present import DecisionOut
from app.engine.run import evaluate_all, select
from tests.astis_patients import ASTIS_CANDIDATE


def partial(payload: dict[str, Any]) -> DecisionOut:
    """A hand-made decision with only the keys the code under test reads."""
    return cast(DecisionOut, payload)


LINKS = Links(form="https://eligo.example/?evaluation=e1", rulesets="https://eligo.example/r/")


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
    caution = next(x for x in card.card["detail"].splitlines() if "*Caution:*" in x)
    assert "age_years = 62" in caution


def test_ruled_out_says_why_with_the_patients_value(shipped_rules: RuleBase) -> None:
    results = _results(shipped_rules, {**ASTIS_CANDIDATE, "lvef_percent": 40}, ["hsct-ssc-astis"])
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    assert card.card["summary"] == "Autologous HSCT for SSc: ruled out under ASTIS"
    assert card.card["indicator"] == "info"
    line = next(x for x in card.card["detail"].splitlines() if "Rules the patient out" in x)
    assert "lvef_percent = 40" in line
    assert card.card["links"] == [{"label": "Open in Eligo", "url": LINKS.form, "type": "absolute"}]
    assert card.card["source"]["url"] == "https://eligo.example/r/hsct-ssc-astis"


def test_undecided_lists_what_to_measure_in_words(shipped_rules: RuleBase) -> None:
    features = {k: v for k, v in ASTIS_CANDIDATE.items() if k != "dlco_percent_predicted"}
    results = _results(shipped_rules, features, ["hsct-ssc-astis"])
    assert results[0]["status"] == "indeterminate"
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    assert card.card["summary"].endswith("; 1 value missing to decide")
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
                "title": "A *bold* [link](http://evil) <b>",
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
    assert r"A \*bold\* \[link\](http://evil) \<b\>" in detail
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
    assert (
        only == "Autologous HSCT for SSc: undecided under UPSIDE; 1 confirmation needed to decide"
    )
    both = summary("hsct", "ssc", [_undecided(["a", "b"], ["c", "d"])])
    assert both.endswith("; 2 values missing, 2 to confirm")
    many = [_undecided([f"m{i}" for i in range(40)], [f"c{i}" for i in range(9)])] * 12
    assert len(summary("hsct", "ssc", many)) <= SUMMARY_LIMIT
    recorded_before = partial({k: v for k, v in _undecided(["a"], []).items() if k != "to_confirm"})
    assert summary("hsct", "ssc", [recorded_before]).endswith("; 1 value missing to decide")


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
    assert "(goes on if no; `severe_comorbidity`)" in confirm


def test_a_shared_criterion_that_rules_out_says_where_it_comes_from(
    shipped_rules: RuleBase,
) -> None:
    results = _results(shipped_rules, {"ssc_diagnosis": True, "pregnant": True}, ["hsct-ssc-astis"])
    assert results[0]["reasons"] == ["pregnancy"]
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    line = next(x for x in card.card["detail"].splitlines() if "Rules the patient out" in x)
    assert line.startswith("- *Rules the patient out:* Pregnancy: `pregnant`")
    assert "*(applies to all cellular therapies: " in line


def test_a_derived_value_says_why_it_holds(shipped_rules: RuleBase) -> None:
    patient = {"ssc_diagnosis": True, "prior_cyclophosphamide_iv_g": 3}
    results = _results(shipped_rules, patient, ["hsct-ssc-upside"])
    assert results[0]["status"] == "ineligible"
    (card,) = cards(results, _labels(shipped_rules), LINKS)
    line = next(x for x in card.card["detail"].splitlines() if "Rules the patient out" in x)
    assert (
        "prior_alkylating_or_irradiation = True, derived: "
        "prior\\_cyclophosphamide\\_iv\\_g \\> 0 g (cyclophosphamide is an alkylating agent)"
        in line
    )


def test_a_card_shows_units_as_clinicians_write_them() -> None:
    """`86 mmHg`, `45 years`: never UCUM's `mm[Hg]` or `a` in a card a clinician reads."""
    assert _value({"feature": "pao2_mmhg", "value": 86, "unit": "mm[Hg]"}) == "pao2_mmhg = 86 mmHg"
    assert _value({"feature": "age_years", "value": 45, "unit": "a"}) == "age_years = 45 years"
    assert _value({"feature": "ecog", "value": 1, "unit": "{score}"}) == "ecog = 1 points"
