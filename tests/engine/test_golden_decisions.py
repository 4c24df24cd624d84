"""Golden decisions: the demo rule set and patients in, compact decisions out.

The expected file (`demo.expected.json`) records status, reasons, missing and every criterion
result, so a change to the evaluator's semantics shows up as a reviewable diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from app.engine.evaluate import decide
from app.engine.inputs import normalise
from app.engine.model import RuleBase
from app.engine.present import decision

CASES = Path(__file__).resolve().parent.parent / "golden" / "decisions" / "demo.yaml"


def compact(rules: RuleBase, features: dict[str, Any]) -> dict[str, Any]:
    out = decision(decide(rules.rulesets["demo"], normalise(features, rules.features)), rules)
    return {
        "status": out["status"],
        "reasons": out["reasons"],
        "missing": out["missing"],
        "criteria": {c["id"]: c["result"] for c in out["criteria"] + out["cautions"]},
    }


def test_golden_decisions(golden_rules: RuleBase) -> None:
    cases = yaml.safe_load(CASES.read_text())
    got = {case["name"]: compact(golden_rules, case["features"]) for case in cases}
    expected_file = CASES.with_suffix(".expected.json")
    if os.environ.get("ELIGO_UPDATE_GOLDEN"):
        expected_file.write_text(json.dumps(got, indent=2) + "\n")
    assert json.loads(json.dumps(got)) == json.loads(expected_file.read_text())
