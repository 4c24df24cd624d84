"""The audit trail through the real app and database: every answer recorded, read back,
listed, replayed with its recorded rule set version and with changed rules."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from app.api.schemas import EvaluationPage, EvaluationRecord, Replay
from app.db.models import Evaluation, EvaluationDecision, RulesetVersion
from app.main import create_app
from app.settings import Settings
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES

ASTIS = "hsct-ssc-astis"


def evaluate(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/evaluations", json={"rulesets": [ASTIS], **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def app_of(client: TestClient) -> FastAPI:
    assert isinstance(client.app, FastAPI)
    return client.app


def count(client: TestClient, model: type[Any]) -> int:
    with app_of(client).state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_record_is_exactly_the_answer(client: TestClient) -> None:
    answer = evaluate(client, features=ASTIS_CANDIDATE)
    response = client.get(f"/v1/evaluations/{answer['id']}")
    assert response.status_code == 200, response.text
    record = response.json()
    EvaluationRecord.model_validate(record)
    assert record["result"] == answer
    assert record["channel"] == "api"
    assert record["client"]["name"] == "test suite"
    assert record["input"]["received"]["features"] == ASTIS_CANDIDATE
    assert record["input"]["normalised"]["pao2_mmhg"]["given"] == {"value": 11.5, "unit": "kPa"}
    assert record["input"]["normalised"]["pao2_mmhg"]["unit"] == "mm[Hg]"
    (decision,) = record["decisions"]
    recorded = answer["results"][0]["ruleset"]
    assert decision == {
        "ruleset_id": ASTIS,
        "version": recorded["version"],
        "hash": recorded["hash"],
        "status": "eligible",
    }


def test_a_rejected_request_is_not_a_decision_and_is_not_recorded(client: TestClient) -> None:
    before = count(client, Evaluation)
    response = client.post("/v1/evaluations", json={"features": {"lvef_percent": 400}})
    assert response.status_code == 422
    assert count(client, Evaluation) == before


def test_each_rule_set_version_is_stored_once_with_content_that_rebuilds_it(
    client: TestClient,
) -> None:
    for _ in range(3):
        evaluate(client, features={})
    with app_of(client).state.sessions() as session:
        rows = session.scalars(select(RulesetVersion).where(RulesetVersion.ruleset_id == ASTIS))
        (row,) = list(rows)
    served = app_of(client).state.rules.rulesets[ASTIS]
    assert row.hash == served.hash
    assert row.content == served.snapshot


def test_patient_identifiers_are_pseudonymised_and_never_stored_or_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    identifier = "urn:oid:2.16.840.1.113883.19.5|MRN-4471-XYZ"
    first = evaluate(client, features={"age_years": 50}, patient_id=identifier)
    second = evaluate(client, features={"age_years": 51}, patient_id=identifier)
    other = evaluate(client, features={"age_years": 51}, patient_id=identifier + "0")
    records = [client.get(f"/v1/evaluations/{a['id']}").json() for a in (first, second, other)]
    pseudonyms = [r["patient_pseudonym"] for r in records]
    assert pseudonyms[0] == pseudonyms[1] != pseudonyms[2]
    assert all(len(p) == 64 and identifier not in p for p in pseudonyms)
    assert "patient_id" not in records[0]["input"]["received"]
    with app_of(client).state.sessions() as session:
        dump = session.execute(text("SELECT * FROM evaluations")).all()
    assert "MRN-4471" not in repr(dump)
    assert "MRN-4471" not in caplog.text


def test_list_filters_and_pages_through_everything_once(client: TestClient) -> None:
    start = datetime.now(UTC)
    ids = {evaluate(client, features=ASTIS_CANDIDATE)["id"] for _ in range(5)}
    ids |= {evaluate(client, features={"ssc_diagnosis": False})["id"] for _ in range(2)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"since": start.isoformat(), "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/evaluations", params=params).json()
        EvaluationPage.model_validate(page)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == ids
    times = [client.get(f"/v1/evaluations/{i}").json()["created_at"] for i in seen]
    assert times == sorted(times, reverse=True)
    eligible = client.get(
        "/v1/evaluations",
        params={"since": start.isoformat(), "ruleset": ASTIS, "status": "eligible"},
    ).json()["items"]
    assert len(eligible) == 5
    later = client.get(
        "/v1/evaluations", params={"since": (datetime.now(UTC) + timedelta(seconds=5)).isoformat()}
    ).json()
    assert later == {"items": [], "next_cursor": None}
    other_channel = client.get(
        "/v1/evaluations", params={"since": start.isoformat(), "channel": "cds-hooks"}
    ).json()
    assert other_channel["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"since": "2026-11-22T08:00:00"}, "since"),
        ({"status": "maybe"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_000}, "limit"),
        ({"channel": "fax"}, "channel"),
    ],
)
def test_bad_list_parameters_name_the_field(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = client.get("/v1/evaluations", params=params)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [f"query.{field}"]


def test_unknown_evaluation_is_404(client: TestClient) -> None:
    for path in ("/v1/evaluations/nope", "/v1/evaluations/nope/replay"):
        method = client.post if path.endswith("replay") else client.get
        assert method(path).status_code == 404


def test_replay_with_the_same_rules_reproduces_the_record(client: TestClient) -> None:
    answer = evaluate(client, features=ASTIS_CANDIDATE)
    response = client.post(f"/v1/evaluations/{answer['id']}/replay")
    assert response.status_code == 200, response.text
    replay = response.json()
    Replay.model_validate(replay)
    (one,) = replay["rulesets"]
    assert one["recorded"]["status"] == "eligible"
    assert one["recorded_version"]["same_as_recorded"] is True
    assert one["today"]["same_as_recorded"] is True
    assert one["today"]["rule_changes"] == []


@pytest.fixture
def changed_rules_client(client: TestClient, tmp_path: Path) -> Iterator[TestClient]:
    """The same database served by an app whose ASTIS upper age limit is now 40."""
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    path = rules / "therapies" / f"{ASTIS}.yaml"
    source = path.read_text()
    assert "when: age_years between 18 and 65" in source
    path.write_text(source.replace("age_years between 18 and 65", "age_years between 18 and 40"))
    settings = app_of(client).state.settings.model_copy(update={"rules_dir": rules})
    with TestClient(create_app(settings), headers=client.headers) as changed:
        yield changed


def test_replay_after_a_rule_change_shows_what_differs(
    client: TestClient, changed_rules_client: TestClient
) -> None:
    answer = evaluate(client, features=ASTIS_CANDIDATE)  # age 45: eligible under 18-65
    replay = changed_rules_client.post(f"/v1/evaluations/{answer['id']}/replay").json()
    (one,) = replay["rulesets"]
    assert one["recorded_version"]["same_as_recorded"] is True
    assert one["recorded_version"]["status"] == "eligible"
    today = one["today"]
    assert today["status"] == "ineligible"
    assert today["hash"] != one["recorded"]["hash"]
    assert {
        "field": "status",
        "id": None,
        "recorded": "eligible",
        "replayed": "ineligible",
    } in today["differences"]
    assert {
        "field": "criterion",
        "id": "age-18-to-65",
        "recorded": "met",
        "replayed": "not_met",
    } in today["differences"]
    assert any(
        c["id"] == "age-18-to-65" and c["subject"] == "threshold" for c in today["rule_changes"]
    )
    # The new version is stored too: decisions made with it can be replayed as well.
    new = evaluate(changed_rules_client, features=ASTIS_CANDIDATE)
    assert new["results"][0]["status"] == "ineligible"
    with app_of(client).state.sessions() as session:
        stored = session.scalars(
            select(RulesetVersion.hash).where(RulesetVersion.ruleset_id == ASTIS)
        ).all()
    assert {today["hash"], one["recorded"]["hash"]} <= set(stored)


def test_replay_when_the_input_no_longer_fits_todays_catalogue(
    client: TestClient, tmp_path: Path
) -> None:
    answer = evaluate(client, features=ASTIS_CANDIDATE)
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    catalogue = rules / "features.yaml"
    # LVEF's plausible range now ends at 58: the recorded 60 % is out of range today.
    text_ = catalogue.read_text()
    marker = "id: lvef_percent"
    head, tail = text_.split(marker, 1)
    tail = tail.replace("range: [5, 90]", "range: [5, 58]", 1)
    catalogue.write_text(head + marker + tail)
    settings = app_of(client).state.settings.model_copy(update={"rules_dir": rules})
    with TestClient(create_app(settings), headers=client.headers) as changed:
        replay = changed.post(f"/v1/evaluations/{answer['id']}/replay").json()
    (one,) = replay["rulesets"]
    assert one["recorded_version"]["same_as_recorded"] is True
    assert "lvef_percent" in one["today"]["error"]


def test_decision_rows_match_the_answer(client: TestClient) -> None:
    answer = client.post("/v1/evaluations", json={"features": ASTIS_CANDIDATE}).json()
    with app_of(client).state.sessions() as session:
        rows = session.scalars(
            select(EvaluationDecision)
            .where(EvaluationDecision.evaluation_id == answer["id"])
            .order_by(EvaluationDecision.position)
        ).all()
    assert [(r.ruleset_id, r.ruleset_hash, r.status) for r in rows] == [
        (d["ruleset"]["id"], d["ruleset"]["hash"], d["status"]) for d in answer["results"]
    ]


def test_settings_for_tests_never_touch_the_project_database(client: TestClient) -> None:
    url = app_of(client).state.settings.database_url
    assert url != Settings().database_url
