"""`normalise` (values looked up in what each feature's compiled check answered before, else
the check) against `inputs.reference` (every value through the general check, nothing
remembered): the same values, types included, or the same issues, word for word."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.inputs import INPUT, InvalidInput, Provenance, normalise, reference
from app.engine.model import RuleBase
from app.engine.schema import FeatureType

FHIR = Provenance(source="fhir", resource="Observation/1", date="2026-01-02")


def outcome(normaliser: Any, raw: dict[str, Any], rules: RuleBase, **options: Any) -> Any:
    try:
        values = normaliser(raw, rules.features, **options)
    except InvalidInput as exc:
        return ("invalid", [(i.field, i.code, i.message) for i in exc.issues])
    # repr: -0.0 is not 0.0, and a provenance is shown whole; types: 45 is not 45.0 or True.
    return ("values", [(key, repr(v), [type(x) for x in v]) for key, v in values.items()])


hostile = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 0.0, -0.0, 1, 1.0, 4, 17.9, 18, 45, 45.0, 65.5, 2**53, 2**53 + 1]),
    st.booleans(),
    st.text(max_size=8),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries(
        {
            "value": st.sampled_from([0, -0.0, 1.5, 40, 88.4, "x", None]),
            "unit": st.text(max_size=6)
            | st.sampled_from(["%", "mg/dL", "umol/L", "a", "mo", "mm[Hg]", "kPa"]),
        }
    ),
    st.dictionaries(st.sampled_from(["value", "unit", "system"]), st.integers(), max_size=3),
)


def typical(rules: RuleBase, ids: list[str]) -> st.SearchStrategy[Any]:
    """Values these features take or nearly take, and their equal-but-unlike twins (45 and
    45.0, 0.0 and -0.0, 1 and True): drawn again and again, so that later sightings are
    looked up in what the first one's check answered."""
    common: list[Any] = [None, True, False, 1, 1.0, 0, 0.0, -0.0]
    for ident in ids:
        spec = rules.features[ident].spec
        common += spec.values or []
        for end in spec.range or ():
            common += [end, int(end), -end, end + 0.5, end - 0.5, int(end) + 1, float(int(end) + 1)]
    return st.sampled_from(common)


def twins(raw: dict[str, Any]) -> dict[str, Any]:
    """Each value replaced by one equal to it (`==`, `hash`) that is answered otherwise:
    0.0 and -0.0, 45 and 45.0, True and 1. A lookup keyed by value alone would confuse them."""
    return {key: _twin(value) for key, value in raw.items()}


def _twin(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return float(value) if abs(value) <= 2**53 else value
    if isinstance(value, float) and value == 0:
        return -value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_normalise_answers_as_the_reference(shipped_rules: RuleBase, data: st.DataObject) -> None:
    """A few features, several payloads over them in turn, each against the reference: typed
    in (looked up from the second sighting on), and under another provenance and prefix."""
    every = sorted(shipped_rules.features)
    ids = data.draw(st.lists(st.sampled_from(every), min_size=1, max_size=3, unique=True))
    keys = st.sampled_from(ids) | st.sampled_from([f"{ids[0]}x", "lvef", "LVEF_PERCENT", ""])
    common = typical(shipped_rules, ids)  # three draws in four: hostile's ten kinds are many
    values = st.integers(0, 3).flatmap(lambda i: hostile if i == 0 else common)
    payloads = data.draw(st.lists(st.dictionaries(keys, values, max_size=4), max_size=6))
    for raw in (twin for payload in payloads for twin in (payload, twins(payload), payload)):
        expected = outcome(reference, raw, shipped_rules)
        assert outcome(normalise, raw, shipped_rules) == expected, raw
    options = {"prefix": "entry[3].features", "provenance": FHIR}
    for raw in payloads:
        assert outcome(normalise, raw, shipped_rules, **options) == outcome(
            reference, raw, shipped_rules, **options
        ), raw


def test_a_value_seen_before_is_looked_up_not_rebuilt(shipped_rules: RuleBase) -> None:
    """The same immutable FeatureValue for the same number, boolean and enum value typed in;
    one per type (45 and 45.0 are echoed as given) and never +0.0's for -0.0."""
    features = shipped_rules.features
    enum = next(f for f in features.values() if f.type is FeatureType.ENUM)
    value = (enum.spec.values or [])[0]
    raw = {"lvef_percent": 45, "pregnant": True, enum.id: value, "mrss": 0.0}
    first, second = normalise(raw, features), normalise(raw, features)
    assert all(second[key] is first[key] for key in raw)
    as_float = normalise({"lvef_percent": 45.0}, features)["lvef_percent"]
    assert type(as_float.given_value) is float
    assert type(first["lvef_percent"].given_value) is int
    negative = normalise({"mrss": -0.0}, features)["mrss"]
    assert repr(negative.given_value) == "-0.0"
    assert repr(first["mrss"].given_value) == "0.0"
    assert negative == reference({"mrss": -0.0}, features)["mrss"]
    assert features["mrss"].seen[float], "0.0 was not kept: the lookup is never exercised"


def test_another_provenance_is_never_answered_from_input_values(shipped_rules: RuleBase) -> None:
    features = shipped_rules.features
    normalise({"lvef_percent": 52}, features)
    typed_in = normalise({"lvef_percent": 52}, features)["lvef_percent"]
    mapped = normalise({"lvef_percent": 52}, features, provenance=FHIR)["lvef_percent"]
    assert typed_in.provenance is INPUT
    assert mapped.provenance is FHIR
