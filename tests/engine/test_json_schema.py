"""The published JSON Schema is current, and the shipped rule files satisfy it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from app.engine.schema import ruleset_json_schema
from tests.conftest import GOLDEN_RULES, ROOT, SHIPPED_RULES

PUBLISHED = ROOT / "schemas" / "ruleset.schema.json"


def test_published_schema_is_generated_from_the_models() -> None:
    assert json.loads(PUBLISHED.read_text()) == ruleset_json_schema(), (
        "regenerate with: eligo rules schema --out schemas/ruleset.schema.json"
    )


@pytest.mark.parametrize(
    "path",
    [
        *sorted((SHIPPED_RULES / "therapies").glob("*.yaml")),
        *sorted((GOLDEN_RULES / "therapies").glob("*.yaml")),
    ],
    ids=lambda p: p.name,
)
def test_rule_files_validate_against_the_schema(path: Path) -> None:
    validator = Draft202012Validator(ruleset_json_schema())
    data = yaml.safe_load(path.read_text())
    assert [e.message for e in validator.iter_errors(data)] == []


def test_schema_rejects_what_the_loader_rejects() -> None:
    validator = Draft202012Validator(ruleset_json_schema())
    data = yaml.safe_load((GOLDEN_RULES / "therapies" / "demo.yaml").read_text())
    data["inclusions"][0]["when"] = {"all": "not a list"}
    data["therapy"] = "stem_cells"
    assert len(list(validator.iter_errors(data))) == 2


def test_published_fragment_schema_is_generated_from_the_models() -> None:
    published = ROOT / "schemas" / "fragment.schema.json"
    assert json.loads(published.read_text()) == ruleset_json_schema("fragment"), (
        "regenerate with: eligo rules schema --fragment --out schemas/fragment.schema.json"
    )


@pytest.mark.parametrize(
    "path", sorted((SHIPPED_RULES / "fragments").glob("*.yaml")), ids=lambda p: p.name
)
def test_fragment_files_validate_against_the_fragment_schema(path: Path) -> None:
    validator = Draft202012Validator(ruleset_json_schema("fragment"))
    data = yaml.safe_load(path.read_text())
    assert [e.message for e in validator.iter_errors(data)] == []
    data["therapies"] = ["stem_cells"]
    assert len(list(validator.iter_errors(data))) == 1
