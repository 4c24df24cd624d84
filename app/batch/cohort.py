"""Read a cohort file into raw patient feature mappings, with file:line for every problem.

Two formats, chosen by extension:
- `.jsonl` / `.ndjson`: one JSON object per line, `{"id": "...", "features": {...}}` with the
  features exactly as POST /v1/evaluations takes them;
- `.csv`: a header row with an `id` column and one column per feature id; `feature[unit]`
  (e.g. `serum_creatinine[umol/L]`) gives that column's unit. Cells are read by the one cell
  grammar (app/engine/cells.py), as `eligo screen` reads them: empty, NA, n/a, NULL, NaN and
  `.` are unknown; booleans are true/yes/y/1 or false/no/n/0.

Cells are typed by the feature catalogue, not guessed: "1" is a number for `mrss` and true for
`ild_present`. Values are not validated here (units, ranges): `normalise` does that, and the
caller reports its issues against the row's file:line.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import strict_json
from app.engine import cells
from app.engine.model import Feature

# A column header: a feature id, optionally with its unit (`serum_creatinine[umol/L]`).
HEADER = re.compile(r"^(?P<feature>[a-z][a-z0-9_]*)(?:\[(?P<unit>[^\]]+)\])?$")
MAX_ROWS = 1_000_000
# A cohort line is one patient's features: held to the API's default JSON limits (a line of
# thousands of nested brackets would otherwise exhaust Python's parser).
LINE_LIMITS = strict_json.Limits(depth=32, items=10_000)


class CohortError(ValueError):
    """A problem in the cohort file; the message starts with file:line."""


@dataclass(frozen=True, slots=True)
class CohortPatient:
    ident: str
    where: str  # file:line
    features: dict[str, Any]


def read_cohort(path: Path, features: Mapping[str, Feature]) -> list[CohortPatient]:
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if suffix in {".jsonl", ".ndjson"}:
                rows = list(_jsonl(handle, str(path)))
            elif suffix == ".csv":
                rows = list(_csv(handle, str(path), features))
            else:
                raise CohortError(
                    f"{path}: unsupported cohort format (use .csv, .jsonl or .ndjson)"
                )
    except OSError as exc:
        raise CohortError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CohortError(f"{path}: not UTF-8 text ({exc.reason})") from None
    _unique_ids(rows)
    return rows


def _unique_ids(rows: list[CohortPatient]) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        if row.ident in seen:
            raise CohortError(f"{row.where}: duplicate id (first at {seen[row.ident]})")
        seen[row.ident] = row.where


def _jsonl(lines: Any, name: str) -> Iterator[CohortPatient]:
    for number, line in enumerate(lines, start=1):
        if number > MAX_ROWS:
            raise CohortError(f"{name}: more than {MAX_ROWS} rows")
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            data = strict_json.loads_checked(line.encode("utf-8", "surrogatepass"), LINE_LIMITS)
        except json.JSONDecodeError as exc:
            raise CohortError(f"{where}:{exc.colno}: malformed JSON: {exc.msg}") from None
        except strict_json.Refused as exc:
            raise CohortError(f"{where}: {strict_json.located(exc.issues[0])}") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise CohortError(f"{where}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("features"), dict):
            raise CohortError(f'{where}: expected {{"id": ..., "features": {{...}}}}')
        extra = set(data) - {"id", "features"}
        if extra:
            raise CohortError(f"{where}: unexpected key(s) {sorted(extra)}")
        ident = data.get("id")
        if not isinstance(ident, str | int) or isinstance(ident, bool) or str(ident) == "":
            raise CohortError(f"{where}: id must be a non-empty string or integer")
        yield CohortPatient(str(ident), where, data["features"])


def _csv(handle: Any, name: str, features: Mapping[str, Feature]) -> Iterator[CohortPatient]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if not header:
        raise CohortError(f"{name}:1: empty file; expected a header row")
    columns = _columns(header, name, features)
    for count, row in enumerate(reader, start=1):  # the header is not a row
        where = f"{name}:{reader.line_num}"
        if count > MAX_ROWS:
            raise CohortError(f"{name}: more than {MAX_ROWS} rows")
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CohortError(f"{where}: {len(row)} cells, the header has {len(header)}")
        yield _patient(row, columns, where, features)


def _columns(
    header: list[str], name: str, features: Mapping[str, Feature]
) -> list[tuple[str, str | None]]:
    columns: list[tuple[str, str | None]] = []
    for number, cell in enumerate(header, start=1):
        match = HEADER.match(cell.strip())
        if match is None:
            raise CohortError(f"{name}:1: column {number} {cell!r} is not a feature id[unit]")
        feature, unit = match["feature"], match["unit"]
        if feature != "id" and feature not in features:
            raise CohortError(f"{name}:1: column {number}: unknown feature {feature!r}")
        columns.append((feature, unit))
    names = [c[0] for c in columns]
    if "id" not in names:
        raise CohortError(f"{name}:1: no `id` column")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CohortError(f"{name}:1: duplicate column(s) {', '.join(duplicates)}")
    return columns


def _patient(
    row: list[str],
    columns: list[tuple[str, str | None]],
    where: str,
    features: Mapping[str, Feature],
) -> CohortPatient:
    ident = ""
    values: dict[str, Any] = {}
    for (feature, unit), raw in zip(columns, row, strict=True):
        if feature == "id":
            ident = raw.strip()
            continue
        value = _cell(raw, features[feature], unit, f"{where}: {feature}")
        if value is not None:
            values[feature] = value
    if not ident:
        raise CohortError(f"{where}: empty id")
    return CohortPatient(ident, where, values)


def _cell(raw: str, feature: Feature, unit: str | None, where: str) -> Any:
    """The cell as the API would be given it (None: unknown); a cell that is no value of the
    feature's type stops the file, with its place."""
    read = cells.read(raw, feature.type)
    if isinstance(read, cells.Unknown):
        return None
    if isinstance(read, cells.Problem):
        raise CohortError(f"{where}: {read.message}")
    if unit and not isinstance(read, bool | str):
        return {"value": read, "unit": unit}
    return read
