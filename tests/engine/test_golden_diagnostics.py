"""Golden tests for the loader: broken rule files in, exact diagnostics out.

Each `tests/golden/diagnostics/NAME.yaml` is loaded as the only rule set beside the golden
catalogue; its diagnostics must equal `NAME.expected` line for line. After a deliberate change,
regenerate with `ELIGO_UPDATE_GOLDEN=1 pytest tests/engine/test_golden_diagnostics.py` and
review the diff like any other change.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.engine.diagnostics import RuleLoadError
from app.engine.load import check_rules, load_rules
from tests.conftest import GOLDEN_RULES

CASES = Path(__file__).resolve().parent.parent / "golden" / "diagnostics"


def _rules_with(tmp_path: Path, case: Path) -> Path:
    rules = tmp_path / "rules"
    (rules / "therapies").mkdir(parents=True)
    for name in ("features.yaml", "evidence.yaml"):
        shutil.copy(GOLDEN_RULES / name, rules / name)
    shutil.copy(case, rules / "therapies" / case.name)
    return rules


@pytest.mark.parametrize("case", sorted(CASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_diagnostics(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = _rules_with(tmp_path, case)
    monkeypatch.chdir(tmp_path)  # diagnostics name files relative to the working directory
    base, diagnostics = check_rules(Path("rules"))
    assert base is None
    got = (
        "\n".join(
            str(d)
            for d in sorted(diagnostics, key=lambda d: (d.position.line, d.position.col, d.code))
        )
        + "\n"
    )
    expected_file = case.with_suffix(".expected")
    if os.environ.get("ELIGO_UPDATE_GOLDEN"):
        expected_file.write_text(got, encoding="utf-8")
    assert got == expected_file.read_text(encoding="utf-8")
    assert rules.is_dir()


def test_load_rules_raises_with_every_diagnostic(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, CASES / "types-and-units.yaml")
    with pytest.raises(RuleLoadError) as info:
        load_rules(rules)
    assert len(info.value.diagnostics) >= 9
    assert info.value.report().endswith("errors in rule files")


def test_golden_catalogue_itself_is_valid() -> None:
    base = load_rules(GOLDEN_RULES)
    assert set(base.rulesets) == {"demo"}


def test_missing_catalogue_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "therapies").mkdir()
    _, diagnostics = check_rules(tmp_path)
    assert sorted(d.code.value for d in diagnostics) == ["E004", "E004"]
    assert {Path(d.position.file).name for d in diagnostics} == {"features.yaml", "evidence.yaml"}


def test_duplicate_rule_set_ids_across_files(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, GOLDEN_RULES / "therapies" / "demo.yaml")
    shutil.copy(GOLDEN_RULES / "therapies" / "demo.yaml", rules / "therapies" / "demo-copy.yaml")
    _, diagnostics = check_rules(rules)
    assert [d.code.value for d in diagnostics] == ["E021"]
    assert "already used by" in diagnostics[0].message
    assert diagnostics[0].position.file.endswith("demo.yaml")
