"""Patient input: raw feature values in, canonical typed values out.

The input contract (DESIGN.md): a feature is a number in its canonical unit, a
`{"value": …, "unit": …}` quantity, a boolean, an enum string, or null / absent for unknown.
Anything else is an input error that names the field: an unknown id, a wrong type, a
non-finite number, a unit UCUM cannot convert, or a value outside the plausible range.
Every problem in a payload is reported at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any, NamedTuple, cast

from app.engine import unit_names
from app.engine.model import Feature, Scalar
from app.engine.schema import FeatureType
from app.engine.suggest import did_you_mean
from app.engine.units import UnitError, converter, round_significant, validate_unit


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a value came from: the caller, or (later) a FHIR resource."""

    source: str = "input"
    resource: str | None = None
    date: str | None = None
    derivation: str | None = None  # source "derived": the implication and its reason
    replaced: str | None = None  # a value given against the implication, as given


INPUT = Provenance()


class FeatureValue(NamedTuple):
    """A value as compared (canonical unit) and as given, with where it came from.

    A tuple: `normalise` builds one per value of every request with `tuple.__new__`."""

    value: Scalar
    unit: str | None
    given_value: Scalar
    given_unit: str | None
    provenance: Provenance = INPUT


@dataclass(frozen=True, slots=True)
class InputIssue:
    field: str
    code: str
    message: str


_EXACT_INT = 2**53  # larger integers have no exact double: echoed as the double compared
_SHOWN = 80  # characters of a value quoted in a message


class InvalidInput(ValueError):
    def __init__(self, issues: list[InputIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{i.field}: {i.message}" for i in issues))


class _Issue(Exception):
    def __init__(self, code: str, message: str, suffix: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.suffix = suffix


def normalise(
    raw: Mapping[str, Any],
    features: Mapping[str, Feature],
    *,
    prefix: str = "features",
    provenance: Provenance = INPUT,
) -> dict[str, FeatureValue]:
    """Validate and convert a feature mapping; raise InvalidInput listing every problem.

    A value typed in that its feature's check has answered before is looked up (`Feature.seen`,
    by type, since 45 and 45.0 are equal keys but echoed as given): three dict lookups instead
    of a call, which halves the time of a typical payload. Anything else (an unknown id, a null,
    a quantity, a value not seen yet, another provenance) goes through the check. `reference`
    is what this means, and tests/engine/test_inputs_compiled.py holds the two alike."""
    values: dict[str, FeatureValue] = {}
    issues: list[InputIssue] = []
    if provenance is INPUT:
        for key, given in raw.items():
            try:
                values[key] = features[key].seen[type(given)][given]
            except KeyError:
                _check(key, given, features, prefix, provenance, values=values, issues=issues)
    else:
        for key, given in raw.items():
            _check(key, given, features, prefix, provenance, values=values, issues=issues)
    if issues:
        raise InvalidInput(issues)
    return values


def _check(
    key: str,
    given: Any,
    features: Mapping[str, Feature],
    prefix: str,
    provenance: Provenance,
    *,
    values: dict[str, FeatureValue],
    issues: list[InputIssue],
) -> None:
    """One raw value through its feature's compiled check: into `values`, or an issue."""
    feature = features.get(key)
    if feature is None:
        issues.append(_unknown(key, features, prefix))
    elif given is not None:  # explicit null: unknown, exactly like an absent key
        try:
            values[key] = (feature.check or checker(feature))(given, provenance)
        except _Issue as issue:
            issues.append(InputIssue(f"{prefix}.{key}{issue.suffix}", issue.code, str(issue)))


def _unknown(key: str, features: Mapping[str, Feature], prefix: str) -> InputIssue:
    return InputIssue(
        f"{prefix}.{key}",
        "unknown_feature",
        f"unknown feature {key!r}{did_you_mean(key, features)}; see GET /v1/features",
    )


def reference(
    raw: Mapping[str, Any],
    features: Mapping[str, Feature],
    *,
    prefix: str = "features",
    provenance: Provenance = INPUT,
) -> dict[str, FeatureValue]:
    """What `normalise` means, plainly: every value through the general check `_value`, with
    no compiled check and nothing remembered. The oracle `normalise` is tested against."""
    values: dict[str, FeatureValue] = {}
    issues: list[InputIssue] = []
    for key, given in raw.items():
        feature = features.get(key)
        if feature is None:
            issues.append(_unknown(key, features, prefix))
            continue
        if given is None:
            continue  # explicit null: unknown, exactly like an absent key
        try:
            values[key] = _value(feature, given, provenance)
        except _Issue as issue:
            issues.append(InputIssue(f"{prefix}.{key}{issue.suffix}", issue.code, str(issue)))
    if issues:
        raise InvalidInput(issues)
    return values


Check = Callable[[Any, Provenance], FeatureValue]
_new = tuple.__new__


Seen = dict[type, dict[Any, FeatureValue]]  # Feature.seen


def checker(feature: Feature) -> Check:
    """The feature's check specialised once (kept on the Feature): the common input, a plain
    number in the canonical unit, a boolean or a listed enum value, takes a few comparisons;
    anything else goes through `_value`, which has every rule and every message.

    A value typed in (provenance INPUT) is immutable and the same whoever sends it, so the
    checks hand out one FeatureValue per boolean, enum value and, up to _KEEP of them, per
    number: clinical values are recorded to a fixed precision and repeat."""
    seen: Seen
    if feature.type is FeatureType.NUMBER:
        check, seen = _number_checker(feature)
    elif feature.type is FeatureType.BOOLEAN:
        typed = {b: FeatureValue(b, None, b, None) for b in (True, False)}
        seen = {bool: typed}

        def check(given: Any, provenance: Provenance) -> FeatureValue:
            if given is True or given is False:
                if provenance is INPUT:
                    return typed[given]
                return _new(FeatureValue, (given, None, given, None, provenance))
            return _value(feature, given, provenance)  # raises the precise wrong_type
    else:
        listed = {v: FeatureValue(v, None, v, None) for v in feature.spec.values or []}
        seen = {str: listed}

        def check(given: Any, provenance: Provenance) -> FeatureValue:
            if type(given) is str and given in listed:
                if provenance is INPUT:
                    return listed[given]
                return _new(FeatureValue, (given, None, given, None, provenance))
            return _value(feature, given, provenance)

    # Caches on an immutable object; `seen` is only ever read (normalise) and added to.
    object.__setattr__(feature, "seen", seen)
    object.__setattr__(feature, "check", check)
    return check


_KEEP = 1024  # numbers remembered per feature and type; about 200 bytes each


def _number_checker(feature: Feature) -> tuple[Check, Seen]:
    canonical = feature.unit or "1"
    low, high = feature.spec.range or (-math.inf, math.inf)
    # Finite bounds for the fast path, so that an infinity or NaN always takes the slow one.
    low, high = max(low, -_FINITE), min(high, _FINITE)
    # By type: 45 and 45.0 are equal keys, but an answer echoes each as it was given. -0.0
    # and 0.0 are equal keys too: 0.0 is kept under _POSITIVE_ZERO, which -0.0 does not find.
    seen: Seen = {float: {}, int: {}}
    # Whole-number features: their check on what `_number` made. Kept with the value, so a
    # repeated value is rounded down or refused once, not at every request.
    whole = None if feature.spec.integer is None else _whole(feature)

    def check(given: Any, provenance: Provenance) -> FeatureValue:
        kind = type(given)
        if kind is not float and not (kind is int and -_EXACT_INT <= given <= _EXACT_INT):
            slow = _number(feature, given, provenance)  # quantities, and every error
            return slow if whole is None else whole(slow, type(given) is dict)
        kept = seen[kind]
        if provenance is INPUT:
            known = kept.get(given)
            if known is not None:
                return known
        # The identity conversion of `_number` (which also turns -0.0 into 0.0), rounding
        # included, without its lookups.
        value = round_significant(float(given)) if given else 0.0
        if not low <= value <= high:
            return _number(feature, given, provenance)  # the out_of_range message
        made: FeatureValue = _new(FeatureValue, (value, canonical, given, canonical, provenance))
        if whole is not None:
            made = whole(made, False)
        if provenance is INPUT and len(kept) < _KEEP:
            if given or kind is int:
                kept[given] = made
            elif math.copysign(1.0, given) > 0:
                kept[_POSITIVE_ZERO] = made
        return made

    return check, seen


class _PositiveZero(float):
    """A key equal to 0.0 and not to -0.0, which `==` and `hash` hold equal to it: 0.0 is
    among the commonest values (no cyclophosphamide given) and is looked up like any other,
    while -0.0, which an answer echoes as given, is never answered with 0.0's FeatureValue."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and other == 0.0 and math.copysign(1.0, other) > 0

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = float.__hash__


_POSITIVE_ZERO = _PositiveZero(0.0)


_FINITE = 1.7976931348623157e308


def _whole(feature: Feature) -> Callable[[FeatureValue, bool], FeatureValue]:
    """A whole-number feature's last check: a fraction is rounded down to completed units
    (`integer: completed`, as FHIR's birthDate gives an age) or refused (`exact`: a count,
    score or class has no fractions, and no rule says how to round one). The bool says the
    value came in a quantity (the issue is then the quantity's `.value`)."""
    completed = feature.spec.integer == "completed"

    def whole(made: FeatureValue, quantity: bool) -> FeatureValue:
        if cast(float, made.value).is_integer():  # a number feature's value: a float
            return made
        if completed:
            return _completed(feature, made)
        raise _Issue(
            "not_whole",
            f"{_given(made)} is not a whole number; {feature.spec.label} has no fractions",
            ".value" if quantity else "",
        )

    return whole


def _given(value: FeatureValue) -> str:
    """A value as given, in people's words, with its canonical value if converted."""
    given = value.given_value
    assert isinstance(given, int | float)
    shown = unit_names.with_unit(float(given), value.given_unit)
    if value.given_unit != value.unit:
        shown += f" (= {unit_names.with_unit(cast(float, value.value), value.unit)})"
    return shown


def _completed(feature: Feature, value: FeatureValue) -> FeatureValue:
    """The completed units of a fractional value, the value given kept beside them, and why:
    the answer lists it under `corrections` as it lists a value an implication replaced."""
    whole = float(math.floor(cast(float, value.value)))  # the loader holds the range >= 0
    shown = _given(value)
    words = unit_names.words(feature.unit)
    why = f"{feature.id} counts completed {words}: {shown} is taken as {whole:g}"
    provenance = replace(value.provenance, derivation=why, replaced=shown)
    return FeatureValue(whole, value.unit, value.given_value, value.given_unit, provenance)


def _value(feature: Feature, given: Any, provenance: Provenance) -> FeatureValue:
    if feature.type is FeatureType.NUMBER:
        made = _number(feature, given, provenance)
        if feature.spec.integer is None:
            return made
        return _whole(feature)(made, isinstance(given, dict))
    if feature.type is FeatureType.BOOLEAN:
        if not isinstance(given, bool):
            raise _Issue("wrong_type", f"expected true or false, got {_describe(given)}")
        return FeatureValue(given, None, given, None, provenance)
    allowed = feature.spec.values or []
    if not isinstance(given, str):
        raise _Issue("wrong_type", f"expected one of {allowed}, got {_describe(given)}")
    if given not in allowed:
        raise _Issue("unknown_value", f"{given!r} is not one of {allowed}")
    return FeatureValue(given, None, given, None, provenance)


def _number(feature: Feature, given: Any, provenance: Provenance) -> FeatureValue:
    canonical = feature.unit or "1"
    unit = sent = canonical
    if isinstance(given, dict):
        sent, given = _quantity(given)
        # As people write it (µmol/L, mmHg, years): its UCUM code, which the record keeps.
        unit = unit_names.ucum(sent)
        suffix = ".value"
    else:
        suffix = ""
    if isinstance(given, bool) or not isinstance(given, int | float):
        raise _Issue("wrong_type", f"expected a number, got {_describe(given)}", suffix)
    try:
        number = float(given)
    except OverflowError:  # an integer beyond any double
        number = math.inf
    if not math.isfinite(number):
        raise _Issue("not_finite", "expected a finite number", suffix)
    if isinstance(given, int) and abs(given) > _EXACT_INT:
        given = number  # what was compared, and what any answer can echo
    try:
        value = converter(unit, canonical, feature.spec.molar_mass)(number)
    except UnitError:
        raise _Issue("unit", unit_refusal(sent, feature), ".unit") from None
    low, high = feature.spec.range or (-math.inf, math.inf)
    if not low <= value <= high:
        shown = unit_names.with_unit(number, unit)
        if unit != canonical:
            shown += f" (= {unit_names.with_unit(value, canonical)})"
        plausible = f"{low:g}–{unit_names.with_unit(high, canonical)}"
        hint = _other_unit(feature, number, unit, (low, high))
        message = f"{shown} is outside the plausible range {plausible}{hint}"
        raise _Issue("out_of_range", message, suffix)
    return FeatureValue(value, canonical, given, unit, provenance)


def _other_unit(feature: Feature, number: float, unit: str, plausible: tuple[float, float]) -> str:
    """A value read in the canonical unit, implausible there but plausible in another unit
    the feature takes (a PaO2 of 11.5 read as mmHg, which is 86 mmHg as kPa): the likelier
    unit, said so that the sender can give it. Never assumed: the value stays refused."""
    canonical = feature.unit or "1"
    if unit != canonical:
        return ""
    for other in feature.spec.other_units:
        try:
            value = converter(other, canonical, feature.spec.molar_mass)(number)
        except UnitError:
            continue
        if plausible[0] <= value <= plausible[1]:
            named = unit_names.words(other)
            return (
                f"; read in {named} it would be about "
                f"{unit_names.with_unit(float(f'{value:.3g}'), canonical)}: "
                f"if it was measured in {named}, give that unit"
            )
    return ""


def _quantity(given: dict[Any, Any]) -> tuple[str, Any]:
    """A quantity's unit as sent, and its value."""
    unknown = set(given) - {"value", "unit"}
    if unknown:
        raise _Issue(
            "unknown_key",
            f"unexpected key(s) {sorted(unknown)}; "
            'a quantity is {"value": number, "unit": text such as "mg/dL"}',
        )
    unit = given.get("unit")
    if not isinstance(unit, str):
        raise _Issue("wrong_type", 'a quantity needs its unit as text, e.g. "mg/dL"', ".unit")
    return unit, given.get("value")


def unit_refusal(sent: str, feature: Feature) -> str:
    """Why `sent` is no unit for `feature`, in people's words (never the UCUM parser's): the
    units the feature takes and, for a unit not recognised at all, the nearest of them."""
    units = [feature.unit or "1", *feature.spec.other_units]
    try:
        validate_unit(unit_names.ucum(sent))
    except UnitError:
        return unit_names.refusal(sent, units, recognised=False)
    return unit_names.refusal(sent, units, recognised=True)


def _describe(value: Any) -> str:
    """The value for a message: short, and always encodable (repr escapes NUL and surrogates)."""
    if value is None:
        return "null"
    kind = {bool: "boolean", str: "string", list: "array", dict: "object"}.get(type(value))
    if kind is None:
        kind = "number" if isinstance(value, int | float) else type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        # Not repr: an integer of over 4,300 digits cannot even be turned into text.
        return f"number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if kind not in ("string", "number", "boolean"):
        return kind
    shown = repr(value)
    return f"{kind} {shown if len(shown) <= _SHOWN else shown[:_SHOWN] + '…'}"


def values_to_json(values: Mapping[str, FeatureValue]) -> dict[str, Any]:
    """Normalised values as JSON, in full: as given, and where each came from (as the audit
    trail shows a record; `values_from_json` inverts)."""
    return {
        key: {
            "value": v.value,
            "unit": v.unit,
            "given": {"value": v.given_value, "unit": v.given_unit},
            "provenance": _provenance_json(v.provenance),
        }
        for key, v in values.items()
    }


@lru_cache(maxsize=4096)
def _provenance_json(provenance: Provenance) -> dict[str, Any]:
    """Shared between records, never changed: most values have the one INPUT provenance, and
    `asdict` per value was a tenth of recording an evaluation against every rule set."""
    return {k: p for k, p in asdict(provenance).items() if p is not None}


def values_to_record(values: Mapping[str, FeatureValue]) -> dict[str, Any]:
    """`values_to_json` as the audit trail stores it: `given` only where it is not the value
    itself, `provenance` only where it is not the caller's input. Nearly every value is typed
    in, in its canonical unit: the full form was a third of a record's bytes and of the
    database's work writing it (every rule set: ~9 kB, ~220 µs of PostgreSQL's ~720 µs)."""
    return {key: _recorded(v) for key, v in values.items()}


def _recorded(v: FeatureValue) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": v.value, "unit": v.unit}
    if v.given_unit != v.unit or not _same(v.given_value, v.value):
        entry["given"] = {"value": v.given_value, "unit": v.given_unit}
    if v.provenance != INPUT:
        entry["provenance"] = _provenance_json(v.provenance)
    return entry


def _same(given: Scalar, value: Scalar) -> bool:
    """Written the same in JSON: of one type and equal (45 == 45.0 == True), and of one sign
    if zero (-0.0 == 0.0): the value as given is echoed as it was given."""
    if given is value:
        return True
    if type(given) is not type(value) or given != value:
        return False
    if isinstance(value, float) and isinstance(given, float):
        return math.copysign(1.0, value) == math.copysign(1.0, given)
    return True


def values_from_json(data: Mapping[str, Any]) -> dict[str, FeatureValue]:
    """The values of `values_to_json` or `values_to_record` (what an absent `given` and
    `provenance` mean: the value itself, typed in)."""
    return {key: _value_of(v) for key, v in data.items()}


def _value_of(v: Mapping[str, Any]) -> FeatureValue:
    given, provenance = v.get("given"), v.get("provenance")
    return FeatureValue(
        v["value"],
        v["unit"],
        v["value"] if given is None else given["value"],
        v["unit"] if given is None else given["unit"],
        INPUT if provenance is None else Provenance(**provenance),
    )


def values_in_full(data: Mapping[str, Any]) -> dict[str, Any]:
    """A record's stored values (either form) as `values_to_json` gives them."""
    return values_to_json(values_from_json(data))
