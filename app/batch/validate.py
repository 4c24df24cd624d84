"""A registry's raw columns -> canonical, validated feature values, in SQL, row by row.

The same rules as the API's `normalise`, read by the one cell grammar (app/engine/cells.py:
the mapping's codes, then missing-value codes, then the text; a declared decimal comma),
written as SQLAlchemy Core so that they run where the data is. A value of the wrong type, an
unconvertible or impossible value is a problem of that cell ("LVEF (lvef_percent): '150' is
outside the plausible range 5–90 %"): the value is NULL (unknown: three-valued logic keeps it
from ever making anyone eligible) and the row is screened and its problem reported, or, in
strict mode, the whole row is kept out of the verdicts and reported; never dropped in silence.
A row without an id, or with an id another row has, is always kept out. Conversions round to
nine significant digits as `units.Linear` does, so a value typed in another unit lands on a
threshold exactly as it does through the API.

Then the catalogue's derivations (`derive`, as the API applies them after `normalise`): a
derived feature's column holds the value its derivations imply where one of their conditions is
known to hold, else the value given. A value given against the implication is replaced, not a
problem of the row (the API's answer lists it under `corrections`): the row is screened with
the implied value, and its `corrected:<feature>` flag is TRUE, for the report to count.

Only the few functions that differ between engines (parsing text as a number, rounding) are
chosen by dialect name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from app.batch.dialects import render
from app.batch.mapping import Code, Column, Plan, RawKind
from app.batch.names import FIELD_SEP, KEY, PROBLEM_SEP, PROBLEMS, ROW, VALID, completed
from app.engine import cells
from app.engine.cells import DEFAULT_MISSING, FALSE_WORDS, MAX_CELL, TRUE_WORDS
from app.engine.model import Feature
from app.engine.result_columns import corrected_column
from app.engine.schema import FeatureType
from app.engine.sql import Columns, derivations, is_true, number
from app.engine.unit_names import with_unit, words
from app.engine.units import IDENTITY

Value = ColumnElement[Any]
Text = ColumnElement[str]

_NUMBER_TEXT = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_DECIMAL_COMMA = "^[-+]?[0-9]+,[0-9]+$"  # cells.DECIMAL_COMMA
_WORDS = f"{'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}"  # as cells.read says it


@dataclass(frozen=True, slots=True)
class Checked:
    value: Value  # canonical and typed; NULL when absent or invalid
    problem: Text  # NULL when the cell is fine
    # A feature counted in completed units (`integer: completed`): TRUE where the value given
    # had a fraction, which `value` rounds down, as `inputs.normalise` does.
    fraction: Value | None = None


def _text(raw: Value) -> Text:
    return sa.cast(raw, sa.String)


def _say(*parts: str | Value) -> Text:
    """A problem message: literal text and cell values, concatenated in SQL."""
    pieces = [sa.literal(p, sa.String) if isinstance(p, str) else _text(p) for p in parts]
    message = pieces[0]
    for piece in pieces[1:]:
        message = message + piece
    return message


def _problem(column: Column, what: str | Text, raw: Value) -> Text:
    """One cell's problem as `_problems` carries it (names.FIELD_SEP): the registry column,
    the feature, what is wrong ("not a number"), and the cell as written (at most
    cells.MAX_CELL characters; the separator replaced)."""
    cell = sa.func.substr(sa.func.replace(_text(raw), PROBLEM_SEP, " "), 1, MAX_CELL)
    return _say(f"{column.column}{FIELD_SEP}{column.feature.id}{FIELD_SEP}", what, FIELD_SEP, cell)


def _matches(text: Text, pattern: str, dialect: str) -> Value:
    """`text` matches the regular expression `pattern` (anchored), in each engine's words."""
    if dialect == "duckdb":
        return sa.func.regexp_full_match(text, pattern, type_=sa.Boolean)
    if dialect == "spark":
        return text.op("RLIKE", return_type=sa.Boolean)(sa.literal(pattern, sa.String))
    return text.regexp_match(pattern)


def parse_number(text: Text, dialect: str) -> Value:
    """Text -> DOUBLE, NULL when it is not a number."""
    if dialect == "postgresql":
        # PostgreSQL has no TRY_CAST; a pattern guards the cast.
        return sa.case((text.regexp_match(_NUMBER_TEXT), sa.cast(text, sa.Double)), else_=None)
    return sa.try_cast(text, sa.Double)


def round9(value: Value, dialect: str) -> Value:
    """`units.round_significant`: nine significant digits. `value` should be a column: the
    SQL names it some 60 times.

    PostgreSQL rounds the exact NUMERIC. Spark takes the precision of ROUND only as a
    constant, so the magnitude picks one of 31 constant ROUNDs; that is four times faster than
    formatting with '%.9g' and gave the same doubles as Python on 200,000 values. The
    magnitude is found by halving the 31 bands (five comparisons) rather than trying them in
    turn (seventeen for a value between 10 and 100): half the time, the same ROUND.

    DuckDB (2.0) takes a DOUBLE's precision per row, so from 1e-13 up its ROUND is given the
    magnitude as `units.round_significant` finds it, `floor(log10(|x|))`, and the band search
    is left to the three smallest bands: 35 % less CPU for the rounding stage of a million rows
    of the shipped catalogue, and the same doubles as the bands on 3.3 million values (every
    band, 2,000 steps either side of each power of ten). Below 1e-13 the two part: just under
    1e-14, log10 rounds up to -14 and DuckDB's ROUND to 22 places gives Python's 1e-14 where
    the band's 23 places give the value back; the bands are kept there, so that nothing a
    screening answered before changes. DuckDB reads it as a macro (`duckdb_macros`).
    """
    if dialect == "postgresql":
        digits = 8 - sa.cast(sa.func.floor(sa.func.log(sa.func.abs(value))), sa.Integer)
        rounded = sa.func.round(sa.cast(value, sa.Numeric), digits)
        return sa.case((value == 0, value), else_=sa.cast(rounded, sa.Double))
    if dialect == "duckdb":
        return sa.func.eligo_round9(value, type_=sa.Double)
    return _round9(value)


def duckdb_macros() -> list[str]:
    """What DuckDB defines before it runs a screening (`DuckDBBackend`): `round9` as a macro,
    printed once instead of once per number column (half the text of the screening query of
    the shipped catalogue, which DuckDB parses and SQLAlchemy prints; the macro is the same
    expression, expanded where it is called)."""
    body = render(_duckdb_round9(sa.literal_column("x", sa.Double)), "duckdb")
    return [f"CREATE OR REPLACE TEMP MACRO eligo_round9(x) AS {body}"]


def _round9(value: Value) -> Value:
    size = sa.func.abs(value)
    low, high = _BANDS[0], _BANDS[-1]
    return sa.case(
        (size < _power(low), value),
        (size < _power(high + 1), _band(value, size, low, high)),
        else_=value,
    )


def _duckdb_round9(value: Value) -> Value:
    """`_round9` with the precision computed per row from 1e-13 up (see `round9`).

    A whole number below 10^9 has nine significant digits or fewer, so rounding gives it back
    (Python's `round(x, n)` with n >= 0 returns a whole x itself): it is returned at once,
    without the logarithm and the ROUND. Registries hold many whole numbers (ages, scores,
    counts; 85 % of the peer cohort's cells, a third of the synthetic registry's): the peer
    rule set's query took 0.85-0.89 CPU-s a million rows instead of 1.07-1.23, its whole
    `eligo screen` 0.93x the CPU.

    So is a number of at most three decimals below 10^6, as registries write measurements
    (61.5, 0.87, 1.25): DuckDB's ROUND(x, 3) is ROUND(x * 1000) / 1000, so where it gives x back
    x is the double nearest k / 1000 for a whole k, whose nine significant digits are k / 1000
    itself below 10^6 (x lies within 10^-10 of it, and rounding keeps three decimals or more).
    The synthetic registry's million rows: 0.65 of ~8.8 CPU-s of the query less."""
    size = sa.func.abs(value)
    low, high = _BANDS[0], _BANDS[-1]
    magnitude = sa.cast(sa.func.floor(sa.func.log10(size)), sa.Integer)
    whole = sa.and_(value == sa.func.trunc(value), size < _power(_WHOLE_BELOW))
    short = sa.and_(sa.func.round(value, _SHORT_DECIMALS) == value, size < _power(_SHORT_BELOW))
    return sa.case(
        (whole, value),
        (short, value),
        (size < _power(low), value),
        (size < _power(_PER_ROW_FROM), _band(value, size, low, _PER_ROW_FROM - 1)),
        (size < _power(high + 1), sa.func.round(value, 8 - magnitude, type_=sa.Double)),
        else_=value,
    )


_BANDS = range(-15, 16)
_PER_ROW_FROM = -13  # DuckDB's ROUND of a per-row precision matches the bands from 1e-13 up
_WHOLE_BELOW = 9  # a whole number below 10^9 is its own nine-significant-digit rounding
_SHORT_DECIMALS, _SHORT_BELOW = 3, 6  # and so is one of three decimals or fewer below 10^6


def _power(exponent: int) -> Value:
    return number(10.0**exponent)


def _band(value: Value, size: Value, low: int, high: int) -> Value:
    """ROUND to nine significant digits for a `value` whose `size` (its absolute value) is
    known to lie in [10^low, 10^(high + 1))."""
    if low == high:
        return sa.func.round(value, 8 - low)
    middle = (low + high + 1) // 2
    return sa.case(
        (size < _power(middle), _band(value, size, low, middle - 1)),
        else_=_band(value, size, middle, high),
    )


def _missing(raw: Value, column: Column) -> Value | None:
    """The cell holds a missing-value code, as the one cell grammar reads it: text that is a
    missing-value code (cells.DEFAULT_MISSING, blank among them, and the mapping's `missing:`),
    compared without case and spaces; in a number column, a declared code that is a number
    (`-99`). An unknown, not a problem of the row. None: the column can hold no code. Codes
    sorted: the SQL text is cached, and must be the same each run."""
    if column.kind in (RawKind.TEXT, RawKind.JSON):
        return sa.func.lower(sa.func.trim(_text(raw))).in_(sorted(column.missing))
    if column.kind is not RawKind.NUMBER:  # a boolean column holds no code
        return None
    numbers = sorted({n for c in column.missing if (n := _code_number(c)) is not None})
    return raw.in_([number(n) for n in numbers]) if numbers else None


def _code_number(code: str) -> float | None:
    read = cells.read(code, FeatureType.NUMBER, cells.Grammar(missing=frozenset()))
    return None if isinstance(read, cells.Unknown | cells.Problem) else float(read)


def _coded(raw: Value, column: Column) -> list[tuple[Value, Code]]:
    """The mapping's `values:` as CASE branches (condition, value), in the grammar's order: a
    text cell's codes as written, then without case and spaces; a number column's numeric
    codes as numbers. A boolean column holds no code."""
    if column.kind is RawKind.NUMBER:
        found: dict[float, Code] = {}
        for code, value in column.values.items():
            if (n := _code_number(code)) is not None:
                found.setdefault(n, value)
        return [(raw == number(n), value) for n, value in found.items()]
    if column.kind is RawKind.BOOLEAN or not column.values:
        return []
    text = sa.func.trim(_text(raw))
    exact = [(text == sa.literal(code, sa.String), v) for code, v in column.values.items()]
    folded = column.grammar().folded.items()
    return exact + [(sa.func.lower(text) == sa.literal(c, sa.String), v) for c, v in folded]


def _unknown(raw: Value, column: Column) -> Value | None:
    """The cell says the value is unknown: a code the mapping sends to null, or (no code of
    the mapping's) a missing-value code. None: the column can hold neither."""
    missing = _missing(raw, column)
    codes = _coded(raw, column)
    if not codes:
        return missing
    branches = [(c, sa.true() if v is None else sa.false()) for c, v in codes]
    return sa.case(*branches, else_=sa.false() if missing is None else missing)


def _present(raw: Value, column: Column) -> Value:
    """The cell holds something: not NULL, and nothing the grammar reads as unknown."""
    unknown = _unknown(raw, column)
    return raw.is_not(None) if unknown is None else sa.and_(raw.is_not(None), sa.not_(unknown))


def _literal(value: Code, kind: FeatureType) -> Value:
    """A `values:` value as SQL of the feature's type (NULL for null)."""
    if value is None:
        return sa.null()
    if kind is FeatureType.NUMBER:
        return number(float(value))
    if kind is FeatureType.BOOLEAN:
        return sa.true() if value else sa.false()
    return sa.literal(str(value), sa.String)


def scale(column: Column, raw: Value, dialect: str) -> Value | None:
    """A number feature's value in its canonical unit, before rounding; NULL where the cell
    is not a number. None for a column that cannot hold one (not a number feature, or a
    boolean column)."""
    if column.feature.type is not FeatureType.NUMBER or column.kind is RawKind.BOOLEAN:
        return None
    kind = column.kind
    if kind is RawKind.JSON:
        raw, kind = sa.func.json_extract_string(raw, "$"), RawKind.TEXT
    as_read = replace(column, kind=kind)
    missing = _missing(raw, as_read)
    codes = [(c, _literal(v, FeatureType.NUMBER)) for c, v in _coded(raw, as_read)]
    if missing is not None and column.missing - DEFAULT_MISSING:  # a declared code: `-99`
        codes.append((missing, sa.null()))
    parsed: Value = raw
    if kind is RawKind.TEXT:
        text: Value = sa.func.trim(raw)
        if column.decimal_comma:  # `61,5`, and only that: `1,5e3` is no number
            comma = sa.func.replace(text, ",", ".")
            text = sa.case((_matches(text, _DECIMAL_COMMA, dialect), comma), else_=text)
        parsed = parse_number(text, dialect)
    if codes:
        parsed = sa.case(*codes, else_=parsed)
    linear = column.linear
    value: Value = sa.cast(parsed, sa.Double)
    # x * 1.0 is x for every double. + 0.0 turns -0.0 into 0.0 as Python's does; DuckDB
    # compares -0.0 equal to 0.0 everywhere (=, <, BETWEEN, IN) and only the verdicts leave the
    # query, so there it is left out: 0.5 CPU-s a million rows of the shipped catalogue.
    if linear.scale != 1.0:
        value = value * number(linear.scale)
    if linear.offset == 0.0 and dialect == "duckdb":
        return value
    return value + number(linear.offset)


def convert(scaled: Value, dialect: str) -> Value:
    """A number feature's canonical value from `scale`'s column: rounded as the API rounds,
    NULL where not finite. Computed once per cell in a stage of its own: the range check and
    the value both read it, and DuckDB does not share the rounding between two CASEs (17 s
    instead of 3 s a million rows)."""
    return sa.case((finite(scaled, dialect), round9(scaled, dialect)))


def finite(value: Value, dialect: str) -> Value:
    """Neither NaN nor infinite, asked explicitly. DuckDB's optimiser reads Parquet min/max
    statistics that leave NaN out, and decided `NaN NOT BETWEEN 0 AND 120` was false."""
    if dialect == "duckdb":
        return sa.func.isfinite(value)
    infinity = sa.cast(sa.literal("Infinity", sa.String), sa.Double)
    if dialect == "spark":
        return sa.and_(sa.not_(sa.func.isnan(value)), sa.func.abs(value) != infinity)
    # PostgreSQL orders NaN above infinity.
    return sa.func.abs(value) < infinity


def _range_as_read(column: Column, low: float, high: float) -> str:
    """The plausible range in the column's own unit first, where it has one (a creatinine in
    µmol/L is told 8.84–1768 µmol/L, not only 0.1–20 mg/dL), then in the canonical unit."""
    canonical = f"{low:g}–{with_unit(high, column.feature.unit)}"
    scale, offset = column.linear.scale, column.linear.offset
    if column.unit is None:
        return canonical
    if column.linear == IDENTITY or not scale:  # mmHg read as mm[Hg]: one range
        return f"{canonical} (read in {words(column.unit)})"
    ends = sorted(((low - offset) / scale, (high - offset) / scale))
    return f"{ends[0]:.4g}–{ends[1]:.4g} {words(column.unit)} ({canonical})"


def _number(column: Column, raw: Value, converted: Value | None, dialect: str) -> Checked:
    feature = column.feature
    if converted is None:  # a boolean column for a number feature
        return Checked(
            sa.cast(sa.null(), sa.Double), _problem(column, "a yes/no, not a number", raw)
        )
    low, high = feature.spec.range or (None, None)
    given = f" (read in {words(column.unit)})" if column.unit else ""  # mmHg, not mm[Hg]
    wrong = sa.and_(_present(raw, column), converted.is_(None))
    not_number: str | Text = "not a number"
    if column.kind in (RawKind.TEXT, RawKind.JSON) and not column.decimal_comma:
        comma = _matches(sa.func.trim(_text(raw)), _DECIMAL_COMMA, dialect)
        # Said so that it helps with or without a mapping file (`eligo mapping init` writes one).
        hint = 'not a number; a decimal comma is read only where a mapping declares decimal: ","'
        not_number = sa.case((comma, sa.literal(hint, sa.String)), else_=not_number)
    problems = [(wrong, _problem(column, not_number, raw))]
    if low is not None and high is not None:
        shown = f"outside the plausible range {_range_as_read(column, low, high)}"
        outside = sa.not_(converted.between(number(low), number(high)))
        problems.append((outside, _problem(column, shown, raw)))
    # Whole numbers (`integer` in the catalogue), as `inputs.normalise` treats them: a count's
    # fraction is refused, a fraction of completed units rounded down (and flagged).
    whole = sa.cast(sa.func.floor(converted), sa.Double)
    fraction = converted != whole
    if feature.spec.integer == "exact":
        refused = f"not a whole number{given}; {feature.spec.label} has no fractions"
        problems.append((fraction, _problem(column, refused, raw)))
    bad = sa.case(*problems)
    if feature.spec.integer == "completed":
        return Checked(sa.case((bad.is_(None), whole)), bad, fraction)
    return Checked(sa.case((bad.is_(None), converted)), bad)


def _codes_note(column: Column) -> str:
    return " nor a code of the mapping's `values:`" if column.values else ""


def _boolean(column: Column, raw: Value) -> Checked:
    kind = column.kind
    if kind is RawKind.BOOLEAN:
        return Checked(raw, sa.cast(sa.null(), sa.String))
    codes = [(c, _literal(v, FeatureType.BOOLEAN)) for c, v in _coded(raw, column)]
    # A declared missing code that is also a yes/no word (`missing: [0]`) is unknown, as the
    # grammar reads codes before words; only those are asked per row (the others read as no
    # word anyway, and `_present` tells them from a problem).
    words = {*TRUE_WORDS, *FALSE_WORDS} & column.missing
    if kind is RawKind.NUMBER:
        yes, no, said = raw == number(1.0), raw == number(0.0), "1 or 0"
        numbers = sorted({n for w in words if (n := _code_number(w)) is not None})
        unknown = raw.in_([number(n) for n in numbers]) if numbers else None
    else:
        word = sa.func.lower(sa.func.trim(raw))
        yes, no, said = word.in_(TRUE_WORDS), word.in_(FALSE_WORDS), _WORDS
        unknown = word.in_(sorted(words)) if words else None
    if unknown is not None:
        codes.append((unknown, sa.null()))
    value = sa.case(*codes, (yes, sa.true()), (no, sa.false()))
    wrong = sa.and_(_present(raw, column), value.is_(None))
    expected = f"not yes/no ({said}){_codes_note(column)}"
    return Checked(value, sa.case((wrong, _problem(column, expected, raw))))


def _enum(column: Column, raw: Value) -> Checked:
    feature = column.feature
    as_text = replace(column, kind=RawKind.TEXT)
    text = sa.func.trim(_text(raw))
    # The mapping's codes first (a registry may code a value as "NA"), then the missing-value
    # codes, then the text as it is, as cells.read takes them.
    codes = [(c, _literal(v, FeatureType.ENUM)) for c, v in _coded(text, as_text)]
    missing = _missing(text, as_text)
    assert missing is not None  # text can hold a code
    value: Value = sa.case(*codes, (missing, sa.null()), else_=text)
    allowed = list(feature.spec.values or [])
    wrong = sa.and_(value.is_not(None), value.not_in(allowed))
    shown = f"not one of {', '.join(allowed)}{_codes_note(column)}"
    return Checked(sa.case((sa.not_(wrong), value)), sa.case((wrong, _problem(column, shown, raw))))


DUPLICATE = "duplicate (another row has the same id)"

_JSON_TYPES = {
    FeatureType.NUMBER: ("BIGINT", "UBIGINT", "DOUBLE"),
    FeatureType.BOOLEAN: ("BOOLEAN",),
    FeatureType.ENUM: ("VARCHAR",),
}


def _json(column: Column, raw: Value, converted: Value | None, dialect: str) -> Checked:
    """A JSON value (DuckDB, NDJSON): of the JSON type the API takes, then read as text.
    `"52"` for a number is refused, as the API refuses it."""
    json_type = sa.func.json_type(raw)
    expected = _JSON_TYPES[column.feature.type]
    wrong = sa.and_(raw.is_not(None), json_type != "NULL", json_type.not_in(expected))
    as_text = replace(column, kind=RawKind.TEXT)
    inner = check(as_text, sa.func.json_extract_string(raw, "$"), converted, dialect)
    what = f"not a {column.feature.type.value} (JSON of another type)"
    problem = sa.case((wrong, _problem(column, what, raw)), else_=inner.problem)
    return Checked(sa.case((problem.is_(None), inner.value)), problem, inner.fraction)


def check(column: Column, raw: Value, converted: Value | None, dialect: str) -> Checked:
    """One cell: its canonical value and its problem, as SQL. `converted` is `convert`'s
    value for a number feature."""
    if column.kind is RawKind.JSON:
        return _json(column, raw, converted, dialect)
    if column.feature.type is FeatureType.NUMBER:
        return _number(column, raw, converted, dialect)
    if column.feature.type is FeatureType.BOOLEAN:
        return _boolean(column, raw)
    return _enum(column, raw)


# A feature's canonical values as SQL holds them.
SQL_TYPES: dict[FeatureType, sa.types.TypeEngine[Any]] = {
    FeatureType.NUMBER: sa.Double(),
    FeatureType.BOOLEAN: sa.Boolean(),
    FeatureType.ENUM: sa.String(),
}


def _converted(raw: FromClause, plan: Plan, dialect: str) -> FromClause:
    """Stages 1 and 2: row number, key, each mapped raw cell (`r<i>`) and, for number
    features, the value in the canonical unit (`s<i>`), then rounded (`n<i>`). The rounding
    reads a column: over the scaling's expression its SQL was 480 kB for the shipped
    catalogue, and took SQLAlchemy half a second to print."""
    columns: list[Value] = [raw.c[ROW].label(ROW), raw.c[plan.key].label("key")]
    numbers: list[int] = []
    for i, column in enumerate(plan.columns):
        columns.append(raw.c[column.column].label(f"r{i}"))
        scaled = scale(column, raw.c[column.column], dialect)
        if scaled is not None:
            columns.append(scaled.label(f"s{i}"))
            numbers.append(i)
    stage = _stage(sa.select(*columns).select_from(raw), "scaled", dialect)
    kept: list[Value] = [stage.c[ROW], stage.c.key]
    kept += [stage.c[f"r{i}"] for i in range(len(plan.columns))]
    kept += [convert(stage.c[f"s{i}"], dialect).label(f"n{i}") for i in numbers]
    return _stage(sa.select(*kept), "converted", dialect)


def duplicate_keys(raw: FromClause, plan: Plan) -> sa.Select[Any]:
    """The keys that occur more than once in `raw`."""
    key = sa.func.trim(_text(raw.c[plan.key]))
    grouped = sa.select(key.label("key")).select_from(raw).group_by(key)
    return grouped.having(sa.func.count() > 1)


def validated(
    raw: FromClause,
    plan: Plan,
    features: Sequence[Feature],
    dialect: str,
    duplicates: Sequence[str] | None = None,
    *,
    strict: bool = False,
) -> FromClause:
    """`raw` (with a `_row` column) as: `_row`, `id`, one canonical column per feature (NULL
    where the source has none or its cell has a problem; derived features as `derive`
    completes them), per derived feature its `corrected:<feature>` flag (`corrected_columns`),
    `_problems` (NULL when the row is fine; names.PROBLEM_SEP) and `_valid`: the row has an id
    of its own, and (`strict`) no cell with a problem.

    `duplicates`: the keys that occur more than once (`duplicate_keys`), where the engine read
    them first (`Backend.duplicates`); else the query finds them itself.

    Three stages: converted numbers (`_converted`), then each cell's value and problem, then
    the row's verdict; the problem text is only assembled for a row that has one."""
    stage = _converted(raw, plan, dialect)
    key = sa.func.trim(_text(stage.c.key), type_=sa.String)
    cells_from, duplicate = _keyed(stage, key, raw, plan, duplicates)
    # The id is never written into the problem: the report counts problems, names no patient.
    said = f"{plan.key}{FIELD_SEP}{FIELD_SEP}"
    key_problem = sa.case(
        (sa.or_(key.is_(None), key == ""), sa.literal(f"{said}empty{FIELD_SEP}", sa.String)),
        (duplicate, sa.literal(f"{said}{DUPLICATE}{FIELD_SEP}", sa.String)),
    )
    checked = [
        check(c, stage.c[f"r{i}"], stage.c.get(f"n{i}"), dialect)
        for i, c in enumerate(plan.columns)
    ]
    by_feature = {c.feature.id: found for c, found in zip(plan.columns, checked, strict=True)}
    columns: list[Value] = [stage.c[ROW].label(ROW), key.label(KEY)]
    for feature in features:
        found = by_feature.get(feature.id)
        value = found.value if found else sa.cast(sa.null(), SQL_TYPES[feature.type])
        columns.append(sa.cast(value, SQL_TYPES[feature.type]).label(feature.id))
    problems = [key_problem, *(c.problem for c in checked)]
    columns += [p.label(f"p{i}") for i, p in enumerate(problems)]
    columns += [
        is_true(sa.and_(found.problem.is_(None), found.fraction)).label(corrected_column(ident))
        for ident, found in by_feature.items()
        if found.fraction is not None
    ]
    cells = _stage(sa.select(*columns).select_from(cells_from), "cells", dialect)
    return _verdict(cells, features, len(problems), dialect, strict)


def _keyed(
    stage: FromClause, key: Text, raw: FromClause, plan: Plan, duplicates: Sequence[str] | None
) -> tuple[FromClause, Value]:
    """What the cells are read from, and the condition that a row's key is a duplicate: the
    keys named, or (not given) a join with `duplicate_keys`. A join, not a window: a window
    over the whole row would hold every column of every row while it partitions."""
    if duplicates is None:
        found = duplicate_keys(raw, plan).subquery("duplicates")
        return stage.outerjoin(found, key == found.c.key), found.c.key.is_not(None)
    if not duplicates:
        return stage, sa.false()
    return stage, key.in_([sa.literal(k, sa.String) for k in duplicates])


def _verdict(
    cells: FromClause, features: Sequence[Feature], count: int, dialect: str, strict: bool
) -> FromClause:
    """Derived values and the flags of the values they replaced, then the row's problems.
    The first problem (`p0`) is the key's: such a row is never screened."""
    derived = derivations(features, lambda f: cells.c[f])
    final: Columns = lambda f: derived.values.get(f, cells.c[f])  # noqa: E731
    problems: list[Value] = [cells.c[f"p{i}"] for i in range(count)]
    fine = sa.and_(*(p.is_(None) for p in problems))
    valid = fine if strict else problems[0].is_(None)
    joined = sa.func.concat_ws(PROBLEM_SEP, *problems, type_=sa.String)
    text = sa.case((sa.not_(fine), joined))
    values = [sa.cast(final(f.id), SQL_TYPES[f.type]).label(f.id) for f in features]
    flags = [flag.label(corrected_column(f)) for f, flag in derived.corrected.items()]
    for feature in features:  # FALSE where the source has no column for the feature
        if completed(feature):
            name = corrected_column(feature.id)
            flag = cells.c[name] if name in cells.c else sa.false()
            flags.append(sa.cast(flag, sa.Boolean).label(name))
    selected = [cells.c[ROW], cells.c[KEY], *values, *flags]
    selected += [text.label(PROBLEMS), valid.label(VALID)]
    return _stage(sa.select(*selected), "validated", dialect)


def _stage(query: sa.Select[Any], name: str, dialect: str) -> FromClause:
    """A subquery PostgreSQL's planner keeps as one (`OFFSET 0`; see `sql.Screening`)."""
    return (query.offset(0) if dialect == "postgresql" else query).subquery(name)
