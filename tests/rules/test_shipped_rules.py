"""The shipped rule sets: their vignettes pass, cover every criterion three ways, and the
sets carry what a clinical reviewer needs (draft status, review note, sources, citations)."""

from __future__ import annotations

from collections import Counter

import pytest

from app.engine.evaluate import Status
from app.engine.floor import applies
from app.engine.load import load_rules
from app.engine.model import RuleBase
from app.engine.vignettes import (
    Outcome,
    Vignette,
    coverage,
    floor_cases,
    load_vignettes,
    run,
)
from tests.conftest import SHIPPED_RULES

RULES = load_rules(SHIPPED_RULES)
VIGNETTES, DIAGNOSTICS = load_vignettes(SHIPPED_RULES / "tests", RULES)
REQUIRED = {
    "hsct-ssc-astis",
    "hsct-ssc-scot",
    "hsct-ssc-assist",
    "hsct-ssc-ebmt-2025",
    "msc-ssc-farge-2022",
    "car-t-ssc-ebmt-isct",
    "hsct-sle-burt-2006",
    "msc-sle-wang-2014",
    "msc-sle-nephritis-nct03580291",
    "car-t-sle",
}


def test_vignette_files_are_valid() -> None:
    assert [str(d) for d in DIAGNOSTICS] == []


@pytest.mark.parametrize("vignette", VIGNETTES, ids=lambda v: f"{v.ruleset.id}: {v.name}")
def test_vignette(vignette: Vignette) -> None:
    outcome = run(vignette)
    assert outcome.passed, "\n".join(outcome.mismatches)


def test_the_rule_sets_the_issue_names_are_shipped() -> None:
    assert set(RULES.rulesets) >= REQUIRED


def test_at_least_eight_vignettes_per_rule_set() -> None:
    counts = Counter(v.ruleset.id for v in VIGNETTES)
    assert {r: counts[r] for r in RULES.rulesets if counts[r] < 8} == {}


@pytest.mark.parametrize("ruleset_id", sorted(RULES.rulesets))
def test_safety_floor_holds_in_every_eligible_vignette(ruleset_id: str) -> None:
    """Generated: each vignette expected eligible, with each general contraindication of its
    therapy switched on (EVIDENCE.md §8), must be ineligible."""
    mine = [v for v in VIGNETTES if v.ruleset.id == ruleset_id]
    cases = floor_cases(mine, RULES)
    eligible = [v for v in mine if v.expect.status is Status.ELIGIBLE]
    assert eligible, f"{ruleset_id} has no eligible vignette to switch contraindications on in"
    floor = [f for f in RULES.floor if applies(f, RULES.rulesets[ruleset_id])]
    assert len(cases) == sum(len(f.witnesses) for f in floor) * len(eligible)
    assert [f"{c.label}: {c.decision.status.value}" for c in cases if not c.passed] == []


def test_full_three_valued_coverage() -> None:
    outcomes: list[Outcome] = [run(v) for v in VIGNETTES]
    gaps = [
        f"{c.ruleset.id} {c.criterion.id}: {[r.value for r in c.unexercised]}"
        for c in coverage(RULES, outcomes)
        if c.unexercised
    ]
    assert gaps == []


@pytest.mark.parametrize("ruleset_id", sorted(RULES.rulesets))
def test_each_rule_set_is_a_draft_that_asks_for_local_review(ruleset_id: str) -> None:
    ruleset = RULES.rulesets[ruleset_id]
    assert ruleset.review_status.value == "draft"
    assert "local clinical review" in " ".join(ruleset.review_note.split())
    assert ruleset.source.strip()


def test_every_criterion_and_risk_cites_known_evidence(shipped_rules: RuleBase) -> None:
    for ruleset in shipped_rules.rulesets.values():
        for criterion in (*ruleset.deciding, *ruleset.cautions):
            assert criterion.citations, criterion.id
            assert criterion.source.strip(), criterion.id
        for fact in (*ruleset.risks, *ruleset.outcomes):
            assert set(fact.cite) <= set(shipped_rules.evidence), fact.id


def test_the_negative_msc_trial_is_cited_beside_wang_2014(shipped_rules: RuleBase) -> None:
    for ruleset in shipped_rules.rulesets.values():
        if ruleset.therapy.value == "msc" and ruleset.indication.value == "sle":
            assert "deng-2017" in ruleset.citations, ruleset.id
