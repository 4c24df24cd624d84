"""The form's view models: sections from the catalogue, pictures of numeric criteria, words."""

from __future__ import annotations

from typing import Any, cast

import pytest

from app.engine import present, words
from app.engine.derive import derive
from app.engine.inputs import normalise
from app.engine.model import RuleBase
from app.engine.run import evaluate_all, select
from app.web import view
from app.web.forms import Entry
from tests.astis_patients import ASTIS_CANDIDATE


def _decisions(rules: RuleBase, patient: dict[str, Any]) -> list[present.DecisionOut]:
    values = derive(normalise(patient, rules.features), rules.features)  # as the service does
    return [present.decision(d, rules) for d in evaluate_all(select(rules, None), values)]


def _astis(shown: view.Results) -> view.Panel:
    return next(p for t in shown.therapies for p in t.panels if p.ruleset["id"] == "hsct-ssc-astis")


def test_every_feature_is_in_one_section_in_clinical_order(shipped_rules: RuleBase) -> None:
    sections = view.sections(shipped_rules.features)
    confirm = view.confirmations(shipped_rules.features, shipped_rules.rulesets.values())
    ids = [f.id for s in sections for f in s.fields] + [c.id for c in confirm]
    assert sorted(ids) == sorted(shipped_rules.features)  # each once: values or confirmations
    assert "severe_comorbidity" in {c.id for c in confirm}
    assert "confirmations" not in {s.id for s in sections}
    titles = [s.title for s in sections]
    assert titles[:3] == ["Demographics and diagnosis", "Skin", "Lung"]
    assert (
        titles.index("Kidney")
        < titles.index("Prior treatment")
        < titles.index("Comorbidities and safety")
    )
    pao2 = next(f for s in sections for f in s.fields if f.id == "pao2_mmhg")
    assert pao2.units == (("mm[Hg]", "mmHg"), ("kPa", "kPa"))
    assert pao2.range == ("20", "150")


def test_a_confirmation_offers_the_answer_that_lets_the_patient_go_on_first(
    shipped_rules: RuleBase,
) -> None:
    confirm = {
        c.id: c for c in view.confirmations(shipped_rules.features, shipped_rules.rulesets.values())
    }
    comorbidity, fitness = confirm["severe_comorbidity"], confirm["hsct_fitness_confirmed"]
    assert comorbidity.options == (
        ("", "Not yet assessed", False),
        ("no", "No", True),
        ("yes", "Yes", False),
    )
    assert fitness.options[1] == ("yes", "Yes", True)
    spec = shipped_rules.features["severe_comorbidity"].spec
    assert spec.confirmation is not None
    assert comorbidity.question == spec.confirmation.question
    assert comorbidity.description == spec.description  # the sources' words
    (hsct_ssc,) = [a for a in comorbidity.asked_by if a.startswith("Autologous HSCT for SSc: ")]
    assert "UPSIDE" in hsct_ssc
    assert any(a.startswith("Autologous HSCT for SLE: ") for a in fitness.asked_by)


def test_a_group_no_section_names_still_gets_a_section(shipped_rules: RuleBase) -> None:
    feature = shipped_rules.features["lvef_percent"]
    moved = type(feature)(feature.spec.model_copy(update={"group": "imaging_other"}))
    sections = view.sections({"lvef_percent": moved})
    assert [(s.title, [f.id for f in s.fields]) for s in sections] == [
        ("Imaging other", ["lvef_percent"])
    ]


def _atom(**kw: Any) -> present.FeatureUse:
    """A hand-made comparison with only the keys `scale` reads."""
    return cast(
        present.FeatureUse,
        {"feature": "dlco_percent_predicted", "unit": "%", "result": "not_met", **kw},
    )


def test_scale_below_a_threshold_shades_the_low_side(shipped_rules: RuleBase) -> None:
    atom = _atom(value=55.0, threshold=40.0, comparison="<")
    drawn = view.scale(atom, shipped_rules.features["dlco_percent_predicted"], "%")
    assert drawn is not None
    assert drawn.shaded[0] == 0
    ((tick, label),) = drawn.ticks
    assert label == "40"
    assert drawn.shaded[1] == tick
    assert tick < drawn.marker < 100  # 55 is right of 40, inside the window
    assert "patient 55 %" in drawn.text
    assert "< 40 %" in drawn.text
    assert float(drawn.low) <= 40
    assert float(drawn.high) >= 55


def test_scale_between_shades_the_band_and_stays_in_the_plausible_range(
    shipped_rules: RuleBase,
) -> None:
    atom = _atom(
        feature="age_years",
        unit="a",
        value=70.0,
        threshold={"low": 18.0, "high": 65.0},
        comparison="between",
    )
    drawn = view.scale(atom, shipped_rules.features["age_years"], "years")
    assert drawn is not None
    (low_tick, _), (high_tick, _) = drawn.ticks
    assert drawn.shaded == (low_tick, high_tick)
    assert drawn.marker > high_tick  # 70 is past the band's end
    assert float(drawn.low) >= 0  # never below the catalogue's 0-120


@pytest.mark.parametrize(
    "atom",
    [
        _atom(value=None, threshold=40.0, comparison="<"),
        _atom(value=True, threshold=True, comparison="=="),
        _atom(value="III", threshold=["III", "IV"], comparison="in"),
    ],
)
def test_no_scale_without_a_known_number(atom: present.FeatureUse) -> None:
    assert view.scale(atom, None, "") is None


def test_numbers_read_as_written() -> None:
    assert words.number(45.0) == "45"
    assert words.number(1.5) == "1.5"
    assert words.number(86.25604) == "86.26"


def test_results_lead_with_what_applies(shipped_rules: RuleBase) -> None:
    patient = {**ASTIS_CANDIDATE, "sle_diagnosis": False}
    shown = view.results(_decisions(shipped_rules, patient), shipped_rules.features)
    assert {t.title for t in shown.therapies} == {
        "Autologous HSCT for SSc",
        "MSC for SSc",
        "CD19 CAR-T for SSc",
    }
    assert all(p.status == "not_indicated" for p in shown.not_indicated)
    assert {p.ruleset["indication"] for p in shown.not_indicated} == {"sle"}
    astis = _astis(shown)
    assert (astis.status_words, astis.symbol) == ("Candidate", "✓")
    pao2 = next(a for c in astis.criteria for a in c.atoms if a.feature == "pao2_mmhg")
    assert pao2.value == "86.26 mmHg (given as 11.5 kPa)"
    assert pao2.threshold == "< 60 mmHg"


def test_an_undecided_panel_says_what_to_measure_in_words(shipped_rules: RuleBase) -> None:
    patient = {k: v for k, v in ASTIS_CANDIDATE.items() if k != "dlco_percent_predicted"}
    shown = view.results(_decisions(shipped_rules, patient), shipped_rules.features)
    astis = _astis(shown)
    assert astis.status == "indeterminate"
    assert astis.missing == (("dlco_percent_predicted", "DLCO"),)
    assert astis.deciding == ()


def test_a_ruled_out_panel_names_what_rules_out(shipped_rules: RuleBase) -> None:
    shown = view.results(
        _decisions(shipped_rules, {**ASTIS_CANDIDATE, "lvef_percent": 40}),
        shipped_rules.features,
    )
    astis = _astis(shown)
    assert astis.status_words == "Ruled out"
    (deciding,) = astis.deciding
    assert [(a.label, a.value, a.threshold) for a in deciding.atoms] == [("LVEF", "40 %", "< 45 %")]


def _citation(**kw: Any) -> present.CitationOut:
    """A hand-made citation with only the keys `link` reads."""
    return cast(present.CitationOut, kw)


def test_citation_links_prefer_doi_then_pubmed() -> None:
    assert view.link(_citation(doi="10.1/x", pmid="1", url="u")) == "https://doi.org/10.1/x"
    assert view.link(_citation(doi=None, pmid="25058083", url="u")) == (
        "https://pubmed.ncbi.nlm.nih.gov/25058083/"
    )
    assert view.link(_citation(doi=None, pmid=None, url=None)) is None


def _upside(shown: view.Results) -> view.Panel:
    return next(
        p for t in shown.therapies for p in t.panels if p.ruleset["id"] == "hsct-ssc-upside"
    )


def test_what_to_confirm_is_listed_apart_from_what_to_measure(shipped_rules: RuleBase) -> None:
    shown = view.results(_decisions(shipped_rules, {"ssc_diagnosis": True}), shipped_rules.features)
    upside = _upside(shown)
    assert upside.status == "indeterminate"
    (item,) = [t for t in upside.to_confirm if t.feature == "severe_comorbidity"]
    spec = shipped_rules.features["severe_comorbidity"].spec
    assert spec.confirmation is not None
    assert (item.question, item.answer) == (spec.confirmation.question, "no")
    assert item.criteria  # the titles of the criteria that wait for it (they quote UPSIDE)
    assert "severe_comorbidity" not in dict(upside.missing)
    assert upside.status_words == "Undecided: values missing, confirmation needed"
    assert upside.still_open.endswith(f", {len(upside.to_confirm)} to confirm")


@pytest.mark.parametrize(
    ("missing", "confirm", "words", "still_open"),
    [
        (["lvef_percent"], [], "Undecided: values missing", "1 value to measure"),
        ([], ["severe_comorbidity"], "Undecided: confirmation needed", "1 to confirm"),
        (
            ["a", "b"],
            ["c"],
            "Undecided: values missing, confirmation needed",
            "2 values to measure, 1 to confirm",
        ),
    ],
)
def test_an_undecided_verdict_says_what_is_open(
    missing: list[str], confirm: list[str], words: str, still_open: str
) -> None:
    result = cast(
        present.DecisionOut,
        {
            "status": "indeterminate",
            "missing": missing,
            "to_confirm": [{"feature": f} for f in confirm],
        },
    )
    assert view.status_words(result) == words
    assert view.still_open(result) == still_open
    # no `to_confirm` then
    recorded_before = cast(present.DecisionOut, {"status": "indeterminate", "missing": ["x"]})
    assert view.status_words(recorded_before) == "Undecided: values missing"


def test_a_shared_criterion_says_where_it_comes_from(shipped_rules: RuleBase) -> None:
    shown = view.results(_decisions(shipped_rules, {"ssc_diagnosis": True}), shipped_rules.features)
    pregnancy = next(c for c in _upside(shown).criteria if c.id == "pregnancy")
    assert pregnancy.origin is not None
    scope, source = pregnancy.origin
    assert scope == "applies to all cellular therapies"
    assert source
    assert not source.startswith("applies to")
    own = next(c for c in _upside(shown).criteria if c.kind == "indication")
    assert own.origin is None


def test_a_derived_value_says_it_was_derived_and_why(shipped_rules: RuleBase) -> None:
    patient = {"ssc_diagnosis": True, "prior_cyclophosphamide_iv_g": 3}
    shown = view.results(_decisions(shipped_rules, patient), shipped_rules.features)
    atom = next(
        a
        for c in _upside(shown).criteria
        for a in c.atoms
        if a.feature == "prior_alkylating_or_irradiation"
    )
    assert atom.value == "yes"
    assert atom.source is None  # nobody entered it, and it came from no FHIR resource
    label = shipped_rules.features["prior_cyclophosphamide_iv_g"].spec.label
    assert atom.derived == f"{label} > 0 g (cyclophosphamide is an alkylating agent)"


def test_derivations_name_features_by_label_but_leave_the_reason_alone(
    shipped_rules: RuleBase,
) -> None:
    provenance: present.Provenance = {
        "source": "derived",
        "derivation": "dialysis (current dialysis is renal replacement therapy (RRT))",
    }
    label = shipped_rules.features["dialysis"].spec.label
    assert view.derivation(provenance, shipped_rules.features) == (
        f"{label} (current dialysis is renal replacement therapy (RRT))"
    )
    entered: present.Provenance = {"source": "input"}
    assert view.derivation(entered, shipped_rules.features) is None
    assert view.source(provenance) is None


def test_the_diseases_come_from_the_rule_sets_indications(shipped_rules: RuleBase) -> None:
    known = view.diseases(shipped_rules.rulesets.values())
    assert list(known) == ["ssc", "sle"]
    assert known["ssc"].diagnosis == ("ssc_diagnosis",)
    assert known["sle"].diagnosis == ("sle_diagnosis",)
    yes, no = Entry("yes"), Entry("no")
    assert view.disease_of({"ssc_diagnosis": yes}, known) == "ssc"
    assert view.disease_of({"ssc_diagnosis": yes, "sle_diagnosis": yes}, known) is None  # both
    assert view.disease_of({"ssc_diagnosis": no}, known) is None


def test_a_work_up_folds_what_one_protocol_asks_and_keeps_what_was_entered(
    shipped_rules: RuleBase,
) -> None:
    ssc = view.diseases(shipped_rules.rulesets.values())["ssc"]
    plain = {s.id: s for s in view.workup(shipped_rules.features, ssc)}
    assert [f.id for f in plain["skin"].fields] == ["mrss"]  # six SSc protocols ask it
    assert [f.id for f in plain["skin"].more] == ["trunk_skin_involvement"]  # ASTIS alone
    assert plain["skin"].more_for == ("ASTIS",)
    assert not plain["skin"].more_open
    assert all(f.id != "sex" for s in plain.values() for f in (*s.fields, *s.more))
    shown = {s.id: s for s in view.workup(shipped_rules.features, ssc, {"sex", "pao2_mmhg"})}
    assert "sex" in [f.id for f in shown["demographics"].more]
    assert shown["lung"].more_open
    assert view.workup(shipped_rules.features, None) == view.sections(shipped_rules.features)


def test_the_first_reason_gives_the_value_and_the_limit(shipped_rules: RuleBase) -> None:
    decisions = _decisions(shipped_rules, {**ASTIS_CANDIDATE, "age_years": 70})
    astis = _astis(view.results(decisions, shipped_rules.features))
    assert astis.status == "ineligible"
    assert astis.first_reason.endswith("Age 70 years (needs 18–65 years)")
