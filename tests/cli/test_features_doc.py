"""docs/FEATURES.md is what `eligo rules features --markdown` makes of the shipped catalogue:
the feature reference cannot drift from the features the service accepts."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli.rules import rules
from app.engine import present
from app.engine.features_doc import render_markdown
from app.engine.model import RuleBase
from tests.conftest import ROOT, SHIPPED_RULES

pytestmark = pytest.mark.one_pass
COMMITTED = ROOT / "docs" / "FEATURES.md"
REGENERATE = "eligo rules features --markdown --out docs/FEATURES.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    made = CliRunner().invoke(rules, ["features", str(SHIPPED_RULES), "--markdown"])
    assert made.exit_code == 0, made.output
    assert COMMITTED.read_text(encoding="utf-8") == made.output, f"run `{REGENERATE}`"


def test_every_feature_is_in_it_with_its_unit_range_values_and_codes(
    shipped_rules: RuleBase,
) -> None:
    text = render_markdown(shipped_rules.features)
    rows = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines()[1:]}
    for feature in shipped_rules.features.values():
        row = rows[feature.id]
        spec = feature.spec
        assert f"| {spec.type.value} |" in row
        if spec.unit:
            assert f"`{spec.unit}`" in row
        if spec.range:
            assert f"{spec.range[0]:g} – {spec.range[1]:g}" in row
        for value in spec.values or ():
            assert f"`{value}`" in row
        for code in spec.codes:
            assert code.code in row
        if spec.max_age_days:
            assert f"{spec.max_age_days} days" in row


def test_without_markdown_it_lists_what_get_v1_features_answers(shipped_rules: RuleBase) -> None:
    made = CliRunner().invoke(rules, ["features", str(SHIPPED_RULES)])
    assert made.exit_code == 0, made.output
    listed = [present.feature(f) for f in shipped_rules.features.values()]
    assert json.loads(made.output) == {"features": listed}
