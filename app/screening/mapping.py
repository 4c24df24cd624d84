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
    missing: [U, -99]                       # codes for unknown in every column

Cells are read by the one cell grammar (app/engine/cells.py): blank, NA, n/a, NULL, NaN and
`.` are unknown in every registry; `missing:` adds a registry's own codes, for all columns or
for one.

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

from app.engine.cells import DEFAULT_MISSING
from app.engine.inputs import unit_refusal
from app.engine.located_yaml import LocatedDocument, PathKey, display_path, load_located
from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.engine.unit_names import ucum
from app.engine.units import IDENTITY, Linear, UnitError, converter
from app.screening.cohort import HEADER


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


@dataclass(frozen=True, slots=True)
class Column:
    """One feature read from one source column."""

    feature: Feature
    column: str
    kind: RawKind
    unit: str | None  # the column's unit; None: the feature's canonical unit
    linear: Linear = IDENTITY  # column unit -> canonical unit
    values: Mapping[str, str] = field(default_factory=dict)  # registry code -> enum value
    # Codes that mean unknown, compared without case and spaces (the defaults and declared).
    missing: frozenset[str] = DEFAULT_MISSING


@dataclass(frozen=True, slots=True)
class Plan:
    key: str
    columns: tuple[Column, ...]
    ignored: tuple[str, ...]  # source columns no feature is read from


@dataclass(frozen=True, slots=True)
class _Wanted:
    column: str
    unit: str | None
    values: Mapping[str, str]
    where: str
    missing: frozenset[str] = frozenset()  # this column's own codes for unknown


@dataclass
class MappingFile:
    key: str = "id"
    wanted: dict[str, _Wanted] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()  # the registry's codes for unknown, every column


def load_mapping(path: Path, features: Mapping[str, Feature]) -> MappingFile:
    name = display_path(path)
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
    extra = set(data) - {"id", "columns", "missing"}
    if extra:
        problems.append(f"{_where(doc, ())}: unexpected key(s) {sorted(extra)}")
    key = data.get("id", "id")
    if not isinstance(key, str) or not key:
        problems.append(f"{_where(doc, ('id',))}: `id` must name the key column")
        key = "id"
    mapping = MappingFile(key=key, missing=_codes(doc, ("missing",), data.get("missing"), problems))
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
    extra = set(spec) - {"column", "unit", "values", "missing"}
    if extra:
        problems.append(f"{where}: {feature_id}: unexpected key(s) {sorted(extra)}")
    unit, values = spec.get("unit"), spec.get("values", {})
    if unit is not None and not isinstance(unit, str):
        problems.append(f"{where}: {feature_id}: `unit` must be text, e.g. µmol/L")
        unit = None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        problems.append(f"{where}: {feature_id}: `values` maps registry codes to feature values")
        values = {}
    codes = _codes(doc, (*path, "missing"), spec.get("missing"), problems)
    return _Wanted(spec["column"], unit, {str(k): v for k, v in values.items()}, where, codes)


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
        if (column := _column(features[feature_id], wanted, source, problems, mapping.missing))
        is not None
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
            problems.append(
                f"{name}: column {column!r} is not a feature id (or `feature[unit]`); "
                "give a mapping file to rename or leave out a registry's own columns"
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
    mapping_missing: frozenset[str],
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
    bad = sorted(set(wanted.values.values()) - set(feature.spec.values or []))
    if wanted.values and (feature.type is not FeatureType.ENUM or bad):
        allowed = feature.spec.values or []
        problems.append(f"{wanted.where}: {feature.id}: values {bad} are not among {allowed}")
        return None
    missing = DEFAULT_MISSING | mapping_missing | wanted.missing
    return Column(feature, wanted.column, kind, unit, linear, wanted.values, missing)
