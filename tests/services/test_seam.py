"""The one seam every channel answers through (app/services/evaluations.py): a pure `decide`
and a `record` that writes who asked as the typed channel says, and nothing of another
channel's. Records on a real SQLite and PostgreSQL database (tests/db's fixtures)."""

from __future__ import annotations

import hashlib
import inspect
import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_type_hints

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db import audit, clients
from app.db.models import Evaluation
from app.db.session import session_factory
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.security import Scope, pseudonym
from app.services import evaluations as service
from tests.astis_patients import ASTIS_CANDIDATE
from tests.fhir.bundles import WRITTEN_ON, ssc_bundle

KEY = b"k" * 32
STAMP = service.Stamp("0b7f0c8e-2f7c-4f7e-9d0a-3d1c5e6a7b8c", datetime(2026, 12, 3, 9, tzinfo=UTC))
# Each channel's own columns: (client_id, clinician, hook_instance), None where not its own.
OWN_COLUMNS = ("client_id", "clinician", "hook_instance")


def test_decide_takes_no_session_and_gives_the_same_bytes_for_the_same_input(
    shipped_rules: RuleBase,
) -> None:
    hints = get_type_hints(service.decide)
    assert Session not in hints.values()
    assert "session" not in inspect.signature(service.decide).parameters
    patient = service.PatientInput(
        features=ASTIS_CANDIDATE, fhir=ssc_bundle(), patient_id="patient-7"
    )
    options = service.Options(view="summary", indications="present")
    stamp = service.Stamp(STAMP.id, datetime.combine(WRITTEN_ON, STAMP.at.timetz()))
    first = service.decide(shipped_rules, patient, options, stamp)
    again = service.decide(shipped_rules, patient, options, stamp)
    assert first.body == again.body
    assert first.body is not again.body  # rendered anew, not remembered
    answer = json.loads(first.body)
    assert answer == first.content  # the content is what the bytes say
    assert (answer["id"], answer["evaluated_at"]) == (stamp.id, stamp.at.isoformat())
    assert answer["view"] == "summary"
    assert "fhir" in answer  # the bundle was read: its summary is in the answer
    # Another stamp the same day: another id and time, nothing else. (The day matters: how old
    # a FHIR value may be is judged on the stamp's date, never the machine's.)
    later = service.Stamp("another-id", stamp.at + timedelta(minutes=1))
    other = json.loads(service.decide(shipped_rules, patient, options, later).body)
    changed = {k for k in answer if answer[k] != other[k]}
    assert changed == {"id", "evaluated_at"}


def test_decide_refuses_bad_input_before_anything_is_answered(shipped_rules: RuleBase) -> None:
    patient = service.PatientInput(features={"age_years": -4, "no_such_feature": 1})
    with pytest.raises(InvalidInput) as refused:
        service.decide(shipped_rules, patient, service.Options(), STAMP)
    refused_fields = {i.field for i in refused.value.issues}
    assert refused_fields == {"features.age_years", "features.no_such_feature"}


def test_a_channels_extra_part_is_in_the_bytes_and_so_in_the_records_digest(
    shipped_rules: RuleBase, engine: Engine
) -> None:
    """CDS Hooks adds its cards before rendering: the record's digest is of the bytes sent."""
    patient = service.PatientInput(features=ASTIS_CANDIDATE)

    def cards(answer: dict[str, Any]) -> dict[str, Any]:
        return {"cards": [{"summary": f"{len(answer['results'])} protocols"}]}

    decided = service.decide(shipped_rules, patient, service.Options(), STAMP, extra=cards)
    assert json.loads(decided.body)["cards"] == [{"summary": "11 protocols"}]
    channel = service.CdsCall("hook-1", {"service": "eligo-patient-view"})
    row = _recorded(engine, decided, channel)
    assert row.result["sha256"] == hashlib.sha256(decided.body).hexdigest()
    assert row.result["bytes"] == len(decided.body)


def _channels(engine: Engine) -> dict[str, tuple[service.Channel, dict[str, str | None]]]:
    """Each channel, and the columns it should fill (every other one of OWN_COLUMNS: None)."""
    with session_factory(engine)() as session:
        client, _ = clients.create(session, "registry", [Scope.EVALUATE])
        session.commit()
        client_id = client.id
    call = {"service": "eligo-patient-view", "hook": "patient-view", "issuer": "https://ehr"}
    return {
        "api": (service.ApiCall(client_id), {"client_id": client_id}),
        "form": (service.FormEntry("dr.ng"), {"clinician": "dr.ng"}),
        "smart-launch": (
            service.SmartLaunch("dr.ng", "https://ehr.example/fhir"),
            {"clinician": "dr.ng"},
        ),
        "cds-hooks": (service.CdsCall("hook-42", call), {"hook_instance": "hook-42"}),
    }


def test_each_channel_records_its_own_fields_and_none_of_anothers(
    shipped_rules: RuleBase, engine: Engine
) -> None:
    patient = service.PatientInput(features=ASTIS_CANDIDATE, patient_id="patient-7")
    for name, (channel, own) in _channels(engine).items():
        decided = service.decide(shipped_rules, patient, service.Options(), service.Stamp.new())
        row = _recorded(engine, decided, channel)
        assert row.channel == name
        assert {c: getattr(row, c) for c in OWN_COLUMNS} == {c: own.get(c) for c in OWN_COLUMNS}
        received = row.input_received
        assert ("call" in received) == (name == "cds-hooks")
        assert ("launch" in received) == (name == "smart-launch")
        assert row.patient_pseudonym == pseudonym(KEY, "patient-7")
        assert "patient-7" not in json.dumps(received)  # the id is kept only as its pseudonym
        assert row.result["sha256"] == hashlib.sha256(decided.body).hexdigest()
        assert [d.status for d in row.decisions] == [
            r["status"] for r in decided.content["results"]
        ]
    launched = _channels(engine)["smart-launch"][0]
    decided = service.decide(shipped_rules, patient, service.Options(), service.Stamp.new())
    assert _recorded(engine, decided, launched).input_received["launch"] == {
        "iss": "https://ehr.example/fhir"
    }


def test_nothing_is_written_until_the_callers_session_commits(
    shipped_rules: RuleBase, engine: Engine
) -> None:
    decided = service.decide(
        shipped_rules, service.PatientInput(features=ASTIS_CANDIDATE), service.Options(), STAMP
    )
    with session_factory(engine)() as session:
        service.record(session, audit.StoredVersions(), decided, service.FormEntry(None), KEY)
        session.rollback()
    with session_factory(engine)() as session:
        assert audit.get(session, STAMP.id) is None


def _recorded(engine: Engine, decided: service.Decided, channel: service.Channel) -> Evaluation:
    with session_factory(engine)() as session:
        service.record(session, audit.StoredVersions(), decided, channel, KEY)
        session.commit()
    with session_factory(engine)() as session:
        row = audit.get(session, decided.content["id"])
        assert row is not None
        session.expunge_all()  # read after the session closes
        return row
