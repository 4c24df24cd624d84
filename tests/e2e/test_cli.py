"""The `eligo` command line, run as the installed console script."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from app.engine.present import DecisionOut
from app.main import create_app
from app.settings import Settings
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES
from tests.e2e.helpers import run_eligo

pytestmark = pytest.mark.e2e


@pytest.fixture
def patient(tmp_path: Path) -> Path:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps({"features": ASTIS_CANDIDATE}))
    return path


def test_evaluate_prints_a_readable_table(patient: Path) -> None:
    result = run_eligo("evaluate", str(patient), "--ruleset", "hsct-ssc-astis")
    assert result.returncode == 0, result.stderr
    assert "hsct-ssc-astis 2.1.0 (draft): ELIGIBLE" in result.stdout
    assert re.search(
        r"exclusion\s+dlco-below-40\s+not met\s+dlco_percent_predicted=55 %", result.stdout
    )
    assert "pao2_mmhg=86.2571 mm[Hg] (given 11.5 kPa)" in result.stdout


def test_evaluate_json_is_the_api_shape(patient: Path) -> None:
    result = run_eligo("evaluate", str(patient), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    for item in body["results"]:
        TypeAdapter(DecisionOut).validate_python(item)
    by_id = {item["ruleset"]["id"]: item for item in body["results"]}
    assert by_id["hsct-ssc-astis"]["status"] == "eligible"


def test_evaluate_takes_the_apis_own_body_and_answers_as_the_api_does(tmp_path: Path) -> None:
    """Issue 20: `eligo evaluate` refused the API's request body (its `patient_id`). Now the
    same service decides: the answer is the API's, id and time apart, `assessed` included."""
    rulesets = ["hsct-ssc-astis", "car-t-sle"]
    body = {"features": ASTIS_CANDIDATE, "patient_id": "P-1", "rulesets": rulesets}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    result = run_eligo("evaluate", str(path), "--json")
    assert result.returncode == 0, result.stderr
    cli = json.loads(result.stdout)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            rules_dir=SHIPPED_RULES, database_url=f"sqlite:///{folder}/a.db", auth=False
        )
        with TestClient(create_app(settings)) as client:
            api = client.post("/v1/evaluations", json=body).json()
    for answer in (cli, api):
        del answer["id"], answer["evaluated_at"]
    assert cli == api
    assert [r["assessed"] for r in cli["results"]] == [True, False]  # lupus: no SLE recorded
    table = run_eligo("evaluate", str(path)).stdout
    assert "car-t-sle 2.1.0 (draft): Not assessed: no SLE diagnosis recorded" in table
    present = run_eligo("evaluate", str(path), "--json", "--indications", "present")
    assert [r["ruleset"]["id"] for r in json.loads(present.stdout)["results"]] == ["hsct-ssc-astis"]


def test_indeterminate_shows_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    features = {k: v for k, v in ASTIS_CANDIDATE.items() if k != "lvef_percent"}
    path.write_text(json.dumps({"features": features}))
    result = run_eligo("evaluate", str(path), "--ruleset", "hsct-ssc-astis")
    assert "INDETERMINATE" in result.stdout
    assert "  missing: lvef_percent\n" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"features": {', "patient.json:1:15: malformed JSON"),
        ('{"features": {"lvef_percent": 200}}', "features.lvef_percent: 200 % is outside"),
        ('{"features": {"lvef": 50}}', "features.lvef: unknown feature 'lvef'"),
        ('{"lvef_percent": 50}', 'expected a JSON object with a "features" object'),
        ('{"features": {}, "rulesets": ["nope"]}', "rulesets[0]: unknown rule set 'nope'"),
        ('{"features": ' + "[" * 2000 + "]" * 2000 + "}", "nest deeper than 32 levels"),
        ('{"features": {"sex": "f\\u0000"}}', "features.sex: contains U+0000"),
        ('{"features": {"age_years": 1' + "0" * 400 + "}}", "features.age_years: "),
        ('{"features": {}, "patient_id": 5}', "patient.json: patient_id: expected text"),
        ('{"features": {}, "rulesets": "hsct-ssc-astis"}', "rulesets: expected a list"),
        ('{"features": {}, "fhir": []}', "fhir: expected a FHIR R4 Bundle"),
        ('{"features": {}, "view": "summary"}', "unexpected key(s) ['view']; a request has"),
    ],
)
def test_bad_patient_files_exit_2_with_a_precise_message(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "patient.json"
    path.write_text(content)
    result = run_eligo("evaluate", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_file(tmp_path: Path) -> None:
    result = run_eligo("evaluate", str(tmp_path / "absent.json"))
    assert result.returncode == 2
    assert "absent.json: cannot read" in result.stderr


def test_rules_validate_ok_and_failing(tmp_path: Path) -> None:
    ok = run_eligo("rules", "validate", str(SHIPPED_RULES))
    assert ok.returncode == 0
    assert "OK (sha256:" in ok.stdout
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    astis = rules / "therapies" / "hsct-ssc-astis.yaml"
    astis.write_text(
        astis.read_text().replace(
            "dlco_percent_predicted < 40 %", "dlco_percent_predicted < 40 mm[Hg]"
        )
    )
    bad = run_eligo("rules", "validate", str(rules))
    assert bad.returncode == 1
    assert "error E013 unit" in bad.stderr
    assert "1 error in rule files" in bad.stderr


def test_rules_schema_matches_published(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert run_eligo("rules", "schema", "--out", str(out)).returncode == 0
    published = SHIPPED_RULES.parent / "schemas" / "ruleset.schema.json"
    assert json.loads(out.read_text()) == json.loads(published.read_text())
