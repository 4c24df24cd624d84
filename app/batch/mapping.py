"""Which registry column gives which feature, in which unit.

Without a mapping file, columns are named after the feature ids (FEATURES.md is a public
contract for exactly this), optionally with a unit: `serum_creatinine[µmol/L]` (a unit as
laboratories write it, or UCUM: app/engine/unit_names.py). A registry
with its own names gives a mapping file (YAML):

    id: patient_number                    # the registry's key column [default: id]
    columns:
      lvef_percent: LVEF                  # feature id: column
      serum_creatinine: {column: CREA, unit: umol/L}
      sex: {column: GENDER, values: {F: female, M: male}}
      mrss: {column: MRSS, missing: [-1]}  # this column's own codes for unknown
      current_smoker: {column: SMOKER, values: {1: true, 2: false, 9: null}}  # every type
      ssc_diagnosis: {column: DX, values: {SSC: true, SLE: false}}     # one column may feed
      sle_diagnosis: {column: DX, values: {SLE: true, SSC: false}}     # several features
      dlco_percent_predicted: {column: DLCO, decimal: ","}             # this column's comma
    missing: [U, -99]                       # codes for unknown in every column
    decimal: ","                            # every number column writes a decimal comma
    strict: false                           # true: a bad cell rejects its row

Cells are read by the one cell grammar (app/engine/cells.py): blank, NA, n/a, NULL, NaN and
`.` are unknown in every registry; `missing:` adds a registry's own codes, for all columns or
for one; `values:` maps a code to a value of the feature's type (or null, unknown), before
any other reading; `decimal: ","` reads `61,5` as 61.5 (declared: where `,` may also separate
thousands it cannot be guessed). A cell that still reads as no value is the cell's problem:
that value is unknown for that patient and reported, unless the mapping says `strict: true`
(then the row is rejected, as it was before issue 20).

Every problem is reported at once, with the mapping file's line or the column's name: an
unknown feature, a missing column, a unit that does not convert to the feature's canonical unit,
a value map onto a value the feature does not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from app.batch.cohort import HEADER
from app.engine.cells import DEFAULT_MISSING, Grammar
from app.engine.inputs import unit_refusal
from app.engine.located_yaml import LocatedDocument, PathKey, display_path, load_located
from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.engine.suggest import did_you_mean
from app.engine.unit_names import ucum
from app.engine.units import IDENTITY, Linear, UnitError, converter


class MappingError(ValueError):
    """Problems in a mapping file or a source's columns, one per line, each with its place."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class RawKind(StrEnum):
    """What a source column holds before validation."""

    NUMBER = "number"
    BOOLEAN = "boolean"
    TEXT = "text"
    JSON = "json"  # a feature value as the API takes it: number, boolean, string or quantity


Code = bool | int | float | str | None  # what a mapping's `values:` maps a code to


@dataclass(frozen=True, slots=True)
class Column:
    """One feature read from one source column."""

    feature: Feature
    column: str
    kind: RawKind
    unit: str | None  # the column's unit; None: the feature's canonical unit
    linear: Linear = IDENTITY  # column unit -> canonical unit
    # Registry code -> the feature's value (an enum's value, true/false, a number in the
    # column's unit) or None (unknown); read before anything else, as `cells.read` reads them.
    values: Mapping[str, Code] = field(default_factory=dict)
    # Codes that mean unknown, compared without case and spaces (the defaults and declared).
    missing: frozenset[str] = DEFAULT_MISSING
    decimal_comma: bool = False  # `61,5` is 61.5 (a number feature's text column)

    def grammar(self) -> Grammar:
        """The column as the one cell grammar reads it (the SQL writes the same rules)."""
        return Grammar(self.missing, self.decimal_comma, self.values)


@dataclass(frozen=True, slots=True)
class Plan:
    key: str
    columns: tuple[Column, ...]
    ignored: tuple[str, ...]  # source columns no feature is read from


@dataclass(frozen=True, slots=True)
class _Wanted:
    column: str
    unit: str | None
    values: Mapping[str, Code]
    where: str
    missing: frozenset[str] = frozenset()  # this column's own codes for unknown
    decimal: bool | None = None  # this column's decimal comma; None: the mapping's


@dataclass
class MappingFile:
    key: str = "id"
    wanted: dict[str, _Wanted] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()  # the registry's codes for unknown, every column
    decimal_comma: bool = False  # every number column writes a decimal comma
    strict: bool = False  # a bad cell rejects its row instead of being unknown


def load_mapping(
    path: Path, features: Mapping[str, Feature], name: str | None = None
) -> MappingFile:
    """The mapping file at `path`; its problems name it `name` (how the caller knows the
    file: a server keeps it under a path of its own), else by its path."""
    name = name or display_path(path)
    doc, diagnostics = load_located(path, name)
    if diagnostics:
        raise MappingError([f"{d.position}: {d.message}" for d in diagnostics])
    problems: list[str] = []
    mapping = _mapping(doc, features, problems)
    if problems:
        raise MappingError(problems)
    return mapping


def _where(doc: LocatedDocument, path: PathKey) -> str:
    position = doc.position(path)
    return f"{position.file}:{position.line}"


def _mapping(
    doc: LocatedDocument, features: Mapping[str, Feature], problems: list[str]
) -> MappingFile:
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
        problems.append(f"{_where(doc, ())}: expected `columns:` mapping feature ids to columns")
        return MappingFile()
    extra = set(data) - {"id", "columns", "missing", "decimal", "strict"}
    if extra:
        problems.append(f"{_where(doc, ())}: unexpected key(s) {sorted(extra)}")
    key = data.get("id", "id")
    if not isinstance(key, str) or not key:
        problems.append(f"{_where(doc, ('id',))}: `id` must name the key column")
        key = "id"
    missing = _codes(doc, ("missing",), data.get("missing"), problems)
    comma = bool(_decimal(doc, ("decimal",), data.get("decimal"), problems))
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        problems.append(f"{_where(doc, ('strict',))}: `strict` is true or false")
        strict = False
    mapping = MappingFile(key=key, missing=missing, decimal_comma=comma, strict=strict)
    for feature_id, spec in data["columns"].items():
        wanted = _entry(doc, str(feature_id), spec, features, problems)
        if wanted is not None:
            mapping.wanted[str(feature_id)] = wanted
    return mapping


def _entry(
    doc: LocatedDocument,
    feature_id: str,
    spec: Any,
    features: Mapping[str, Feature],
    problems: list[str],
) -> _Wanted | None:
    path: PathKey = ("columns", feature_id)
    where = _where(doc, path)
    if feature_id not in features:
        problems.append(f"{where}: unknown feature {feature_id!r}; see GET /v1/features")
        return None
    if isinstance(spec, str):
        spec = {"column": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("column"), str):
        problems.append(
            f"{where}: {feature_id}: expected a column name or {{column, unit, values}}"
        )
        return None
    extra = set(spec) - {"column", "unit", "values", "missing", "decimal"}
    if extra:
        problems.append(f"{where}: {feature_id}: unexpected key(s) {sorted(extra)}")
    unit = spec.get("unit")
    if unit is not None and not isinstance(unit, str):
        problems.append(f"{where}: {feature_id}: `unit` must be text, e.g. µmol/L")
        unit = None
    values = _values(doc, (*path, "values"), spec.get("values", {}), problems)
    codes = _codes(doc, (*path, "missing"), spec.get("missing"), problems)
    decimal = _decimal(doc, (*path, "decimal"), spec.get("decimal"), problems)
    if decimal is not None and features[feature_id].type is not FeatureType.NUMBER:
        problems.append(f"{where}: {feature_id} is not a number; it has no decimal comma")
        decimal = None
    return _Wanted(spec["column"], unit, values, where, codes, decimal)


def _values(
    doc: LocatedDocument, path: PathKey, given: Any, problems: list[str]
) -> dict[str, Code]:
    """`values:`: registry code -> value. A code is text or a number; YAML reads an unquoted
    yes/no/on/off as a boolean, which no cell is: such a code is refused, to be quoted. Whether
    each value suits the feature is checked with the column (`_column`)."""
    where = _where(doc, path) if isinstance(given, dict) else _where(doc, path[:-1])
    if not isinstance(given, dict):
        problems.append(f"{where}: `values` maps registry codes to the feature's values")
        return {}
    found: dict[str, Code] = {}
    for code, value in given.items():
        if isinstance(code, bool) or not isinstance(code, str | int | float):
            shown = "null" if code is None else str(code).lower()
            problems.append(f"{where}: the code {shown} is no cell's text; quote it: '{shown}'")
        elif not isinstance(value, bool | int | float | str | None):
            problems.append(f"{where}: {code}: a code maps to one value (or null)")
        else:
            found[str(code)] = value
    return found


def _decimal(doc: LocatedDocument, path: PathKey, given: Any, problems: list[str]) -> bool | None:
    """`decimal:`: "," (a decimal comma) or "." (a decimal point); None when not given."""
    if given is None:
        return None
    if given not in (",", "."):
        problems.append(
            f'{_where(doc, path)}: `decimal` is "," (a decimal comma: 61,5) or "." (61.5)'
        )
        return None
    return bool(given == ",")


def _codes(doc: LocatedDocument, path: PathKey, given: Any, problems: list[str]) -> frozenset[str]:
    """`missing:`: a list of codes (text or numbers), as the cell grammar compares them."""
    if given is None:
        return frozenset()
    if not isinstance(given, list) or not all(
        isinstance(c, str | int | float) and not isinstance(c, bool) for c in given
    ):
        problems.append(
            f"{_where(doc, path)}: `missing` lists the codes that mean unknown, e.g. [U, -99]"
        )
        return frozenset()
    return frozenset(str(c).strip().casefold() for c in given)


def plan(
    source: Mapping[str, RawKind],
    features: Mapping[str, Feature],
    mapping: MappingFile | None = None,
    *,
    name: str = "source",
) -> Plan:
    """Match the source's columns (name -> kind) to features; raise MappingError listing
    every problem."""
    problems: list[str] = []
    if mapping is None:
        mapping = _by_name(source, features, name, problems)
        ignored: list[str] = []
    else:
        used = {w.column for w in mapping.wanted.values()} | {mapping.key}
        ignored = [c for c in source if c not in used]
    if mapping.key not in source:
        problems.append(f"{name}: no key column {mapping.key!r} (name it in the mapping: `id:`)")
    columns = [
        column
        for feature_id, wanted in mapping.wanted.items()
        if (column := _column(features[feature_id], wanted, source, problems, mapping)) is not None
    ]
    if problems:
        raise MappingError(problems)
    return Plan(mapping.key, tuple(columns), tuple(ignored))


def _by_name(
    source: Mapping[str, RawKind], features: Mapping[str, Feature], name: str, problems: list[str]
) -> MappingFile:
    mapping = MappingFile()
    for column in source:
        match = HEADER.match(column)
        feature_id, unit = (match["feature"], match["unit"]) if match else (column, None)
        if column == "id":
            continue
        if feature_id not in features:
            near = did_you_mean(feature_id, features)
            problems.append(
                f"{name}: column {column!r} is not a feature id (or `feature[unit]`){near}; "
                "give a mapping file to rename or leave out a registry's own columns "
                "(`eligo mapping init` drafts one)"
            )
        elif feature_id in mapping.wanted:
            problems.append(f"{name}: two columns give {feature_id!r}")
        else:
            mapping.wanted[feature_id] = _Wanted(column, unit, {}, f"{name}: column {column!r}")
    return mapping


def _column(
    feature: Feature,
    wanted: _Wanted,
    source: Mapping[str, RawKind],
    problems: list[str],
    mapping: MappingFile,
) -> Column | None:
    kind = source.get(wanted.column)
    if kind is None:
        problems.append(f"{wanted.where}: {feature.id}: no column {wanted.column!r} in the source")
        return None
    linear = IDENTITY
    # A unit as registries write it (µmol/L, mmHg) is its UCUM code, as the API reads it.
    unit = None if wanted.unit is None else ucum(wanted.unit)
    if unit is not None:
        if feature.type is not FeatureType.NUMBER:
            problems.append(f"{wanted.where}: {feature.id} is not a number; it has no unit")
            return None
        try:
            linear = converter(unit, feature.unit or "1", feature.spec.molar_mass)
        except UnitError:
            refused = unit_refusal(wanted.unit or "", feature)
            problems.append(f"{wanted.where}: {feature.id}: {refused}")
            return None
    refused = _unfit_values(feature, wanted.values)
    if refused:
        problems.append(f"{wanted.where}: {feature.id}: {refused}")
        return None
    missing = DEFAULT_MISSING | mapping.missing | wanted.missing
    # A decimal comma is a number's: declared for the whole registry, it leaves the others be.
    comma = wanted.decimal if wanted.decimal is not None else mapping.decimal_comma
    comma = comma and feature.type is FeatureType.NUMBER
    return Column(feature, wanted.column, kind, unit, linear, wanted.values, missing, comma)


def _unfit_values(feature: Feature, values: Mapping[str, Code]) -> str:
    """Why a `values:` map does not suit the feature ("" when it does): each code maps to a
    value of the feature's type, or to null (unknown)."""
    given = [v for v in values.values() if v is not None]
    if feature.type is FeatureType.ENUM:
        allowed = feature.spec.values or []
        bad = sorted({str(v) for v in given} - set(allowed))
        return f"values {bad} are not among {allowed}" if bad else ""
    if feature.type is FeatureType.BOOLEAN:
        bad = sorted({str(v) for v in given if not isinstance(v, bool)})
        return f"values {bad} are not true, false or null (a yes/no)" if bad else ""
    bad = sorted({str(v) for v in given if isinstance(v, bool) or not isinstance(v, int | float)})
    return f"values {bad} are not numbers (or null)" if bad else ""
