"""The audit trail stores normalised values compactly (`values_to_record`): read back, they are
the values recorded, written as `values_to_json` writes them, byte for byte; older records (the
full form) read the same."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.derive import derive
from app.engine.inputs import (
    INPUT,
    FeatureValue,
    Provenance,
    normalise,
    values_from_json,
    values_in_full,
    values_to_json,
    values_to_record,
)
from app.engine.model import RuleBase, Scalar
from tests.astis_patients import ASTIS_CANDIDATE

scalars: st.SearchStrategy[Scalar] = (
    st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 0, 1, 1.0, True, False, 45, 45.0, "45", "female"])
)
units: st.SearchStrategy[str | None] = st.sampled_from([None, "a", "kg/m2", "%", "{score}"])
provenances = st.sampled_from(
    [
        INPUT,
        Provenance(),
        Provenance("fhir", "Observation/echo-1", "2026-10-01"),
        Provenance("derived", derivation="x > 0 g", replaced="false"),
    ]
)


@st.composite
def feature_values(draw: st.DrawFn) -> FeatureValue:
    value, unit = draw(scalars), draw(units)
    if draw(st.booleans()):  # typed in as compared
        return FeatureValue(value, unit, value, unit, draw(provenances))
    return FeatureValue(value, unit, draw(scalars), draw(units), draw(provenances))


def _bytes(values: dict[str, FeatureValue]) -> bytes:
    return orjson.dumps(values_to_json(values))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), feature_values(), max_size=4))
def test_a_record_reads_back_as_the_values_recorded(values: dict[str, FeatureValue]) -> None:
    stored = json.loads(orjson.dumps(values_to_record(values)))  # as the database gives it
    assert _bytes(values_from_json(stored)) == _bytes(values)  # types and -0.0 included
    assert orjson.dumps(values_in_full(stored)) == _bytes(values)


def test_a_value_typed_in_as_compared_is_stored_without_given_or_provenance(
    shipped_rules: RuleBase,
) -> None:
    values = derive(normalise(ASTIS_CANDIDATE, shipped_rules.features), shipped_rules.features)
    record = values_to_record(values)
    assert record["ssc_diagnosis"] == {"value": True, "unit": None}
    assert len(orjson.dumps(record)) < len(orjson.dumps(values_to_json(values))) * 0.7
    typed = FeatureValue(45.0, "a", 45.0, "a", INPUT)
    assert values_to_record({"x": typed}) == {"x": {"value": 45.0, "unit": "a"}}
    # Different as given: kept. 45 (int) is written 45, 45.0 is written 45.0; -0.0 not 0.0.
    assert "given" in values_to_record({"x": FeatureValue(45.0, "a", 45, "a", INPUT)})["x"]
    assert "given" in values_to_record({"x": FeatureValue(0.0, "a", -0.0, "a", INPUT)})["x"]
    assert "given" in values_to_record({"x": FeatureValue(True, None, 1, None, INPUT)})["x"]
    assert "given" in values_to_record({"x": FeatureValue(1.0, "kg", 1.0, "g", INPUT)})["x"]
    assert "given" not in values_to_record({"x": FeatureValue(-0.0, "a", -0.0, "a", INPUT)})["x"]


def test_a_record_of_the_full_form_still_reads(shipped_rules: RuleBase) -> None:
    values = normalise(ASTIS_CANDIDATE, shipped_rules.features)
    older = json.loads(orjson.dumps(values_to_json(values)))
    assert _bytes(values_from_json(older)) == _bytes(values)
    assert values_in_full(older) == older
