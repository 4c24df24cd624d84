"""Rule set snapshots (stored with every decision) rebuild the exact rule set, and recorded
values round-trip, so a decision can be replayed years later."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import TypeAdapter, ValidationError

from app.engine import present
from app.engine.diagnostics import RuleLoadError
from app.engine.evaluate import decide
from app.engine.inputs import normalise, values_from_json, values_to_json
from app.engine.load import rebuild
from app.engine.model import RuleBase
from app.engine.replay import ReplayDifference, differences
from tests.astis_patients import ASTIS_CANDIDATE

_DIFFERENCES = TypeAdapter(list[ReplayDifference])


def test_every_shipped_rule_set_rebuilds_from_its_json_snapshot(shipped_rules: RuleBase) -> None:
    for ruleset in shipped_rules.rulesets.values():
        stored = json.loads(json.dumps(ruleset.snapshot))  # as the database gives it back
        rebuilt = rebuild(stored, ruleset.hash)
        again = rebuilt.rulesets[ruleset.id]
        assert again.hash == ruleset.hash
        assert [c.id for c in again.deciding] == [c.id for c in ruleset.deciding]
        assert set(rebuilt.features) == set(ruleset.snapshot["features"])


def test_a_tampered_snapshot_is_refused(shipped_rules: RuleBase) -> None:
    ruleset = shipped_rules.rulesets["hsct-ssc-astis"]
    tampered = copy.deepcopy(dict(ruleset.snapshot))
    tampered["ruleset"]["inclusions"][0]["when"] = "age_years between 18 and 70"
    with pytest.raises(RuleLoadError) as error:
        rebuild(tampered, ruleset.hash)
    assert "hashes to" in error.value.report()


@pytest.mark.parametrize(
    "snapshot",
    [
        {},
        {"ruleset": {}, "features": {}, "evidence": {}},
        {"ruleset": None, "features": [], "evidence": "x"},
    ],
)
def test_a_broken_snapshot_is_a_diagnostic_not_a_crash(snapshot: dict[str, object]) -> None:
    with pytest.raises(RuleLoadError) as error:
        rebuild(snapshot, "sha256:0")
    assert error.value.diagnostics


def test_recorded_values_round_trip_and_decide_the_same(shipped_rules: RuleBase) -> None:
    values = normalise(ASTIS_CANDIDATE, shipped_rules.features)
    stored = json.loads(json.dumps(values_to_json(values)))
    assert values_from_json(stored) == values
    ruleset = shipped_rules.rulesets["hsct-ssc-astis"]
    before = present.decision(decide(ruleset, values), shipped_rules)
    after = present.decision(decide(ruleset, values_from_json(stored)), shipped_rules)
    assert differences(before, after) == []


def test_differences_name_status_grounds_and_criteria() -> None:
    recorded = {
        "status": "eligible",
        "reasons": [],
        "missing": [],
        "criteria": [{"id": "a", "result": "met"}, {"id": "gone", "result": "met"}],
        "cautions": [],
    }
    replayed = {
        "status": "ineligible",
        "reasons": ["a"],
        "missing": [],
        "criteria": [{"id": "a", "result": "not_met"}, {"id": "new", "result": "unknown"}],
        "cautions": [],
        "risks": ["wording changes are not differences"],
    }
    assert differences(recorded, replayed) == [
        {"field": "status", "id": None, "recorded": "eligible", "replayed": "ineligible"},
        {"field": "reasons", "id": None, "recorded": [], "replayed": ["a"]},
        {"field": "criterion", "id": "a", "recorded": "met", "replayed": "not_met"},
        {"field": "criterion", "id": "gone", "recorded": "met", "replayed": None},
        {"field": "criterion", "id": "new", "recorded": None, "replayed": "unknown"},
    ]


def test_differences_are_their_typed_payload() -> None:
    """Each difference holds to the API's type of it, which refuses any key it does not list."""
    recorded = {"status": "eligible", "criteria": [{"id": "a", "result": "met"}]}
    replayed = {"status": "ineligible", "criteria": [{"id": "a", "result": "not_met"}]}
    found = differences(recorded, replayed)
    assert _DIFFERENCES.validate_python(found) == found
    with pytest.raises(ValidationError, match="extra"):
        _DIFFERENCES.validate_python([{**found[0], "note": "not in the type"}])


def test_confirmations_are_compared_apart_from_values_to_measure() -> None:
    recorded = {"status": "indeterminate", "missing": [], "to_confirm": ["severe_comorbidity"]}
    replayed = {"status": "indeterminate", "missing": ["dlco"], "to_confirm": []}
    assert differences(recorded, replayed) == [
        {"field": "missing", "id": None, "recorded": [], "replayed": ["dlco"]},
        {"field": "to_confirm", "id": None, "recorded": ["severe_comorbidity"], "replayed": []},
    ]


def test_a_record_from_before_to_confirm_is_not_reported_for_the_split() -> None:
    """Release 1 listed a clinician judgement under `missing`; the same grounds split into
    two lists today are not a change, a different set of them is."""
    recorded = {"status": "indeterminate", "missing": ["major_organ_damage", "lvef_percent"]}
    same = {"missing": ["lvef_percent"], "to_confirm": ["major_organ_damage"]}
    assert differences(recorded, {"status": "indeterminate", **same}) == []
    other = {"status": "indeterminate", "missing": ["lvef_percent"], "to_confirm": []}
    assert differences(recorded, other) == [
        {
            "field": "missing",
            "id": None,
            "recorded": ["lvef_percent", "major_organ_damage"],
            "replayed": ["lvef_percent"],
        }
    ]
