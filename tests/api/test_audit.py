"""The audit trail through the real app and database: every answer recorded, read back,
listed, replayed with its recorded rule set version and with changed rules."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select, text

from app.api.schemas import EvaluationPage, EvaluationRecord, EvaluationSummaryResponse
from app.db.models import Evaluation, EvaluationDecision, RulesetVersion
from app.engine import present
from app.main import create_app
from app.services.evaluations import Replay
from app.settings import Settings
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES

ASTIS = "hsct-ssc-astis"
# The documented contract: the payloads' own types, which refuse a key they do not list.
RECORD: TypeAdapter[EvaluationRecord] = TypeAdapter(EvaluationRecord)
REPLAY = TypeAdapter(Replay)


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
    RECORD.validate_python(record)
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
    REPLAY.validate_python(replay)
    (one,) = replay["rulesets"]
    assert one["recorded"]["status"] == "eligible"
    assert one["recorded_version"]["same_as_recorded"] is True
    assert one["today"]["same_as_recorded"] is True
    assert one["today"]["rule_changes"] == []


def test_the_audit_types_hold_the_payloads_to_every_key(client: TestClient) -> None:
    answer = evaluate(client, features=ASTIS_CANDIDATE)
    record = client.get(f"/v1/evaluations/{answer['id']}").json()
    replay = client.post(f"/v1/evaluations/{answer['id']}/replay").json()
    with pytest.raises(ValidationError, match="extra"):
        RECORD.validate_python({**record, "integrity": {**record["integrity"], "x": 1}})
    (one,) = replay["rulesets"]
    today = {k: v for k, v in one["today"].items() if k != "error"}  # null, never left out
    with pytest.raises(ValidationError, match="missing"):
        REPLAY.validate_python({**replay, "rulesets": [{**one, "today": today}]})


def test_replay_of_a_version_that_no_longer_rebuilds_says_why(client: TestClient) -> None:
    answer = evaluate(client, features={"age_years": 44})
    with app_of(client).state.sessions() as session:
        version = session.get(RulesetVersion, answer["results"][0]["ruleset"]["hash"])
        assert version is not None
        content = version.content
        version.content = {**content, "features": "not a mapping"}
        session.commit()
        try:
            replay = client.post(f"/v1/evaluations/{answer['id']}/replay").json()
        finally:
            version.content = content
            session.commit()
    REPLAY.validate_python(replay)
    (one,) = replay["rulesets"]
    assert one["recorded"]["status"] == "indeterminate"
    assert one["recorded_version"]["error"].startswith("cannot rebuild the stored version")
    assert one["recorded_version"]["status"] is None
    assert one["today"] is None


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


# --- compact records: verdicts, envelope and digest, the answer re-rendered and proven ----


def stored_result(client: TestClient, evaluation_id: str) -> dict[str, Any]:
    with app_of(client).state.sessions() as session:
        row = session.get(Evaluation, evaluation_id)
        assert row is not None
        return dict(row.result)


def test_the_record_is_compact_and_proves_the_exact_bytes_sent(client: TestClient) -> None:
    """All shipped rule sets: the answer is hundreds of kB, the record a few; reading the
    record gives the same bytes back, proven by the SHA-256 taken when they were sent."""
    response = client.post("/v1/evaluations", json={"features": ASTIS_CANDIDATE})
    assert response.status_code == 200
    sent = response.content
    answer = response.json()
    stored = stored_result(client, answer["id"])
    assert stored["format"] == "compact/1"
    assert stored["sha256"] == hashlib.sha256(sent).hexdigest()
    assert stored["bytes"] == len(sent)
    assert len(json.dumps(stored)) < len(sent) / 20, "the record keeps the rule sets' text"
    astis = answer["results"][[r["ruleset"]["id"] for r in answer["results"]].index(ASTIS)]
    verdict = stored["verdicts"][answer["results"].index(astis)]
    assert verdict["status"] == astis["status"] == "eligible"
    every = [*astis["criteria"], *astis["cautions"]]
    assert verdict["criteria"] == "".join(
        {"met": "M", "not_met": "N", "unknown": "U"}[c["result"]] for c in every
    )
    record = client.get(f"/v1/evaluations/{answer['id']}").json()
    RECORD.validate_python(record)
    assert record["integrity"] == {
        "verified": True,
        "sha256": hashlib.sha256(sent).hexdigest(),
        "bytes": len(sent),
    }
    assert record["result"] == answer
    assert present.render(record["result"]) == sent  # the same bytes, not just equal JSON


def test_a_record_from_a_version_no_longer_served_is_rebuilt_and_proven(
    client: TestClient, changed_rules_client: TestClient
) -> None:
    answer = evaluate(client, features=ASTIS_CANDIDATE)
    record = changed_rules_client.get(f"/v1/evaluations/{answer['id']}").json()
    assert record["integrity"]["verified"] is True
    assert record["result"] == answer
    assert record["result"]["results"][0]["status"] == "eligible"  # the version then


def test_a_tampered_record_is_not_shown_as_the_answer(client: TestClient) -> None:
    """A record whose re-rendering does not match its digest says so and shows the verdicts
    it holds; a replay compares against those verdicts, which were stored as decided."""
    answer = evaluate(client, features={**ASTIS_CANDIDATE, "age_years": 70})
    with app_of(client).state.sessions() as session:
        row = session.get(Evaluation, answer["id"])
        assert row is not None
        normalised = dict(row.input_normalised)
        normalised["age_years"] = {**normalised["age_years"], "value": 45.0}
        row.input_normalised = normalised  # the input no longer gives what was sent
        session.commit()
    record = client.get(f"/v1/evaluations/{answer['id']}").json()
    RECORD.validate_python(record)
    assert record["integrity"]["verified"] is False
    assert "differs from the one sent" in record["integrity"]["problem"]
    (verdict,) = record["result"]["results"]
    assert verdict["status"] == "ineligible"
    assert verdict["reasons"] == ["age-18-to-65"]
    assert "title" not in verdict
    replay = client.post(f"/v1/evaluations/{answer['id']}/replay").json()
    REPLAY.validate_python(replay)
    (one,) = replay["rulesets"]
    assert one["recorded_version"]["status"] == "eligible"  # decided on the altered input
    assert {
        "field": "criterion",
        "id": "age-18-to-65",
        "recorded": "not_met",
        "replayed": "met",
    } in one["recorded_version"]["differences"]


def test_the_summary_view_is_the_verdict_without_the_trace_and_recorded_alike(
    client: TestClient,
) -> None:
    patient = {**ASTIS_CANDIDATE, "age_years": 70}
    del patient["dlco_percent_predicted"]
    full = client.post("/v1/evaluations", json={"features": patient})
    short = client.post("/v1/evaluations?view=summary", json={"features": patient})
    assert short.status_code == 200, short.text
    assert len(short.content) * 10 < len(full.content)
    summary = short.json()
    EvaluationSummaryResponse.model_validate(summary)
    assert summary["view"] == "summary"
    for brief, whole in zip(summary["results"], full.json()["results"], strict=True):
        assert brief["ruleset"]["hash"] == whole["ruleset"]["hash"]
        assert brief["status"] == whole["status"]
        assert [r["id"] for r in brief["reasons"]] == whole["reasons"]
        assert [m["feature"] for m in brief["missing"]] == whole["missing"]
        assert [q["feature"] for q in brief["to_confirm"]] == [
            q["feature"] for q in whole["to_confirm"]
        ]
    astis = next(r for r in summary["results"] if r["ruleset"]["id"] == ASTIS)
    assert astis["status"] == "ineligible"
    assert astis["reasons"][0]["title"]  # a label a person reads, not only an id
    record = client.get(f"/v1/evaluations/{summary['id']}").json()
    RECORD.validate_python(record)
    assert record["integrity"]["verified"] is True
    assert present.render(record["result"]) == short.content
    replay = client.post(f"/v1/evaluations/{summary['id']}/replay").json()
    assert all(r["recorded_version"]["same_as_recorded"] for r in replay["rulesets"])
    bad = client.post("/v1/evaluations?view=brief", json={"features": patient})
    assert bad.status_code == 422
    assert "view" in bad.text


def test_large_answers_are_compressed_for_clients_that_accept_it(client: TestClient) -> None:
    plain = client.post(
        "/v1/evaluations",
        json={"features": ASTIS_CANDIDATE},
        headers={"Accept-Encoding": "identity"},
    )
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"].lower() == "accept-encoding"  # said by ResponseHeaders
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["cache-control"] == "no-store"
    packed = client.post(
        "/v1/evaluations",
        json={"features": ASTIS_CANDIDATE},
        headers={"Accept-Encoding": "gzip"},
    )
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"].lower() == "accept-encoding"  # once: said by GZip alone
    assert packed.headers["x-content-type-options"] == "nosniff"
    assert int(packed.headers["content-length"]) * 3 < len(plain.content)
    answer = packed.json()  # httpx decompresses
    assert [r["status"] for r in answer["results"]] == [
        r["status"] for r in plain.json()["results"]
    ]
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers  # not worth it under 2 kB
