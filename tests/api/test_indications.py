"""Indications first (issue 19): an SSc patient whose SLE is simply not entered sees the lupus
protocols set apart as not assessed, not mixed with the undecided SSc ones; through the real
API and database, recorded and proven like any answer."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi.testclient import TestClient

from app.api.schemas import EvaluationResponse, EvaluationSummaryResponse
from app.db.models import Evaluation
from app.engine import present
from tests.api.test_audit import RECORD, REPLAY, app_of, stored_result
from tests.astis_patients import ASTIS_CANDIDATE

NEPHRITIS = "msc-sle-nephritis-nct03580291"
# The lupus protocols an SSc patient is undecided under; the nephritis trial excludes other
# autoimmune diseases, SSc among them, so it rules an SSc patient out whatever the SLE: an
# answer, assessed, not one to set apart.
SLE = {"car-t-sle", "hsct-sle-burt-2006", "msc-sle-wang-2014"}
# The values a clinician types first: SSc recorded, SLE left unknown.
FIRST = {
    "ssc_diagnosis": True,
    "age_years": 45,
    "mrss": 20,
    "fvc_percent_predicted": 70,
    "dlco_percent_predicted": 55,
    "lvef_percent": 60,
}


def evaluate(client: TestClient, features: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = client.post(f"/v1/evaluations{query}", json={"features": features})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def apart(answer: dict[str, Any]) -> set[str]:
    return {r["ruleset"]["id"] for r in answer["results"] if r["assessed"] is False}


def test_ssc_recorded_and_sle_unknown_sets_the_lupus_protocols_apart(client: TestClient) -> None:
    answer = evaluate(client, FIRST)
    EvaluationResponse.model_validate(answer)
    assert apart(answer) == SLE
    nephritis = next(r for r in answer["results"] if r["ruleset"]["id"] == NEPHRITIS)
    assert nephritis["status"] == "ineligible"
    assert nephritis["assessed"] is True
    assert nephritis["reasons"] == ["other-autoimmune-disease"]
    for result in answer["results"]:
        if result["ruleset"]["id"] in SLE:
            assert result["status"] == "indeterminate"  # no fifth status
            assert result["not_assessed"]["code"] == "no_diagnosis_recorded"
            assert result["not_assessed"]["recorded"] == ["ssc"]
            assert "no SLE diagnosis recorded" in result["not_assessed"]["message"]
        else:
            assert result["assessed"] is True
            assert "not_assessed" not in result
    assert "omitted" not in answer
    assert "indications" not in answer


def test_both_diagnoses_unknown_sets_nothing_apart(client: TestClient) -> None:
    answer = evaluate(client, {k: v for k, v in FIRST.items() if k != "ssc_diagnosis"})
    assert apart(answer) == set()
    assert {r["status"] for r in answer["results"]} == {"indeterminate"}


def test_sle_recorded_and_ssc_false_is_not_indicated_not_set_apart(client: TestClient) -> None:
    answer = evaluate(client, {"sle_diagnosis": True, "ssc_diagnosis": False})
    assert apart(answer) == set()
    ssc = [r for r in answer["results"] if r["ruleset"]["indication"] == "ssc"]
    assert len(ssc) == 7
    assert {r["status"] for r in ssc} == {"not_indicated"}


def test_only_the_indications_present_leaves_the_others_out_and_says_so(
    client: TestClient,
) -> None:
    answer = evaluate(client, FIRST, "?indications=present")
    EvaluationResponse.model_validate(answer)
    assert len(answer["results"]) == 8
    assert all(r["assessed"] for r in answer["results"])
    assert answer["indications"] == "present"
    assert answer["omitted"]["code"] == "no_diagnosis_recorded"
    assert answer["omitted"]["count"] == 3
    assert set(answer["omitted"]["rulesets"]) == SLE
    record = client.get(f"/v1/evaluations/{answer['id']}").json()
    RECORD.validate_python(record)
    assert record["integrity"]["verified"] is True
    assert record["result"] == answer
    assert record["input"]["received"]["indications"] == "present"  # what was asked
    assert {d["ruleset_id"] for d in record["decisions"]}.isdisjoint(SLE)  # what was answered
    summary = evaluate(client, FIRST, "?indications=present&view=summary")
    EvaluationSummaryResponse.model_validate(summary)
    assert summary["omitted"]["count"] == 3
    assert len(summary["results"]) == 8
    nothing_apart = evaluate(
        client, ASTIS_CANDIDATE | {"sle_diagnosis": False}, "?indications=present"
    )
    assert nothing_apart["omitted"] == {"code": "no_diagnosis_recorded", "count": 0, "rulesets": []}
    bad = client.post("/v1/evaluations?indications=some", json={"features": FIRST})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.indications"]


def test_a_set_apart_answer_is_recorded_proven_and_replayed(client: TestClient) -> None:
    response = client.post("/v1/evaluations", json={"features": FIRST})
    answer = response.json()
    stored = stored_result(client, answer["id"])
    assert stored["sha256"] == hashlib.sha256(response.content).hexdigest()
    assert [v["assessed"] for v in stored["verdicts"]] == [r["assessed"] for r in answer["results"]]
    record = client.get(f"/v1/evaluations/{answer['id']}").json()
    RECORD.validate_python(record)
    assert record["integrity"]["verified"] is True
    assert present.render(record["result"]) == response.content
    replay = client.post(f"/v1/evaluations/{answer['id']}/replay").json()
    REPLAY.validate_python(replay)
    assert len(replay["rulesets"]) == 11
    assert all(r["recorded_version"]["same_as_recorded"] for r in replay["rulesets"])
    assert all(r["today"]["same_as_recorded"] for r in replay["rulesets"])


def test_a_record_from_before_the_marker_still_proves(client: TestClient) -> None:
    """A record made before `assessed` existed: its answer had no marker, its verdicts none.
    Re-rendered as it was sent (no marker), it still proves against its digest."""
    answer = evaluate(client, FIRST)
    old = {**answer, "results": [_unmarked(r) for r in answer["results"]]}
    sent = present.render(old)
    with app_of(client).state.sessions() as session:
        row = session.get(Evaluation, answer["id"])
        assert row is not None
        result = dict(row.result)
        result["verdicts"] = [_unmarked(v) for v in result["verdicts"]]
        result["sha256"], result["bytes"] = hashlib.sha256(sent).hexdigest(), len(sent)
        row.result = result
        session.commit()
    record = client.get(f"/v1/evaluations/{answer['id']}").json()
    RECORD.validate_python(record)
    assert record["integrity"]["verified"] is True
    assert orjson.dumps(record["result"]) == orjson.dumps(orjson.loads(sent))
    assert all("assessed" not in r for r in record["result"]["results"])
    replay = client.post(f"/v1/evaluations/{answer['id']}/replay").json()
    assert all(r["recorded_version"]["same_as_recorded"] for r in replay["rulesets"])


def _unmarked(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("assessed", "not_assessed")}
