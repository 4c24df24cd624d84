"""The vignette example in rules/README.md is a real, passing vignette: the guide cannot drift
from the format or from the rule set it quotes."""

from __future__ import annotations

import re
from pathlib import Path

from app.engine.model import RuleBase
from app.engine.vignettes import load_vignettes, run
from tests.conftest import SHIPPED_RULES


def test_the_readme_vignette_example_passes(shipped_rules: RuleBase, tmp_path: Path) -> None:
    readme = (SHIPPED_RULES / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```yaml\n(ruleset: .*?)```", readme, flags=re.S)
    (tmp_path / "example.yaml").write_text(example, encoding="utf-8")
    vignettes, diagnostics = load_vignettes(tmp_path, shipped_rules)
    assert diagnostics == []
    assert len(vignettes) == 3
    assert [run(v).mismatches for v in vignettes] == [(), (), ()]
