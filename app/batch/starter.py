"""`eligo mapping init SOURCE`: a starter mapping for a registry's own columns.

A registry names its columns its own way (`LVEF`, `CREA_umol`, `Gender`); writing the mapping
file by hand means reading the feature catalogue column by column. This reads the source's
header and a sample of its values and proposes, for each column, the feature it most likely
gives, from the column's name (the feature's id or label, word for word or close to it) and
its values (numbers for a number, the feature's values for a choice, yes/no words for a
yes/no), with the unit its name carries (`CREA_umol`, `Creatinine (mg/dL)`) where the feature
converts from it. The registry's codings are read from the sample too (app/batch/codings.py):
its codes for unknown (`-99`, `U`) as `missing:`, decimal commas, SPSS's 1/2/9 yes/no, choice
codes that abbreviate one value (`dcSSc`). Every proposal says why, so the analyst can check
it; the columns no feature matches are listed as comments. Nothing is guessed silently: a guess
the data cannot confirm (1 = yes) says so in a comment, and a code the sample holds that reads
as none of the feature's values, or as several, is left for the analyst, named in a comment.
The file is one `eligo screen --mapping` accepts as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from difflib import SequenceMatcher
from pathlib import Path

from app.batch import codings, head
from app.batch.backends import SourceError, file_format
from app.batch.codings import NO_MISSING, Missing
from app.batch.head import Limits
from app.batch.mapping import Code
from app.engine import cells
from app.engine.cells import DEFAULT_MISSING, FALSE_WORDS, TRUE_WORDS
from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.engine.suggest import close_to
from app.engine.unit_names import ucum
from app.engine.unit_names import words as unit_words
from app.engine.units import IDENTITY, UnitError, converter

# Words of a column name that say its unit, not what it measures ("CREA_umol", "Hb_g_dl").
UNIT_WORDS = frozenset(
    {"umol", "mmol", "mg", "g", "dl", "l", "ml", "min", "s", "pct", "percent", "kpa", "mmhg", "yrs"}
)
SAMPLE_ROWS = 1000  # rows read for the values; a registry's codes show in far fewer
SHOWN_VALUES = 6  # values quoted in a comment
MATCHED = 60  # the score from which a column is proposed for a feature
# Column names a registry gives its patient key.
KEY_NAMES = ("id", "patient_id", "patientid", "pid", "patient", "subject_id", "record_id")
_WORD = re.compile(r"[a-z0-9]+")
_UNIT_PART = re.compile(r"[\[(]([^\])]+)[\])]\s*$")  # "Creatinine (mg/dL)", "crea[umol/L]"
_BOOLEAN_WORDS = frozenset(TRUE_WORDS + FALSE_WORDS)


@dataclass(frozen=True, slots=True)
class SourceColumn:
    name: str
    values: tuple[str, ...]  # distinct non-missing values of the sample, as text
    unique: bool = False  # every row of the sample has its own value (a key, likely)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A column proposed for a feature, and why; `unit` and `codes` as the mapping writes them."""

    column: SourceColumn
    feature: Feature
    score: int
    why: str
    unit: str | None = None
    codes: Mapping[str, Code] = field(default_factory=dict)  # `values:`
    unread: tuple[str, ...] = ()  # sample values the mapping will not read as the feature's
    decimal: str | None = None  # `decimal:` ("," or "."), where the column needs one
    notes: tuple[str, ...] = ()  # guesses to check and doubts to settle, one comment each


@dataclass(frozen=True, slots=True)
class Starter:
    key: str | None
    proposals: tuple[Proposal, ...]
    unmatched: tuple[SourceColumn, ...]
    missing: Missing = NO_MISSING  # the registry's own codes for unknown (`missing:`)
    decimal: str | None = None  # `decimal: ","` for every number column
    # Columns that fit several features equally well (`PRED_MG`: prednisone or predicted?).
    tied: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def propose(columns: Sequence[SourceColumn], features: Mapping[str, Feature]) -> Starter:
    """Each column's likeliest feature; a feature goes to its best column only. The
    registry's codes for unknown are found first, so that they count against no column."""
    key = _key(columns)
    missing = _registry_missing([c for c in columns if c.name != key], features)
    best: dict[str, Proposal] = {}
    tied: dict[str, tuple[str, ...]] = {}
    for column in columns:
        if column.name == key:
            continue
        found, tied[column.name] = _best(column, features, missing)
        if found is not None and (
            found.feature.id not in best or found.score > best[found.feature.id].score
        ):
            best[found.feature.id] = found
    best.update(_diagnoses(columns, features, best))
    chosen = {p.column.name for p in best.values()}
    proposals = tuple(
        sorted(best.values(), key=lambda p: [c.name for c in columns].index(p.column.name))
    )
    unmatched = tuple(c for c in columns if c.name not in chosen and c.name != key)
    decimal, proposals = _registry_decimal(proposals)
    tied = {c: ids for c, ids in tied.items() if ids}
    return Starter(key, proposals, unmatched, missing, decimal, tied)


# A registry's one diagnosis column (`DX: SSC, SLE, …`): the codes that name one disease, or
# both, by the usual abbreviations and words. Anything else (OTHER, "SSC (SLE NK)", a local
# code) is left unread, for the analyst: a wrong guess here would make a patient not
# indicated, or indicated, for a whole therapy.
_SSC_CODES = frozenset(
    {"SSC", "DCSSC", "LCSSC", "DSSC", "LSSC", "SCLERODERMA", "SYSTEMIC SCLEROSIS"}
)
_SLE_CODES = frozenset({"SLE", "LUPUS", "SYSTEMIC LUPUS ERYTHEMATOSUS"})
_BOTH = re.compile(r"^\s*(SSC|SLE)\s*[+&/]\s*(SSC|SLE)\s*$")
_INDICATIONS = ("ssc_diagnosis", "sle_diagnosis")


def _diagnoses(
    columns: Sequence[SourceColumn], features: Mapping[str, Feature], best: Mapping[str, Proposal]
) -> dict[str, Proposal]:
    """Both indication features from one column of disease codes, when no column was
    proposed for either: without them no patient can be not indicated (the screening warns),
    and a registry more often codes its diagnosis in one column than in two yes/no ones."""
    if any(f in best or f not in features for f in _INDICATIONS):
        return {}
    taken = {p.column.name for p in best.values()}
    for column in columns:
        if column.name in taken:
            continue
        read = {v: _diagnosis_of(v) for v in column.values}
        known = {v: pair for v, pair in read.items() if pair is not None}
        if not any(ssc for ssc, _ in known.values()) or not any(sle for _, sle in known.values()):
            continue
        unread = tuple(v for v, pair in read.items() if pair is None)
        why = "its values name both diseases (SSc and SLE): one column, read for each"
        return {
            feature: Proposal(
                column,
                features[feature],
                score=MATCHED,
                why=why,
                codes={v: pair[i] for v, pair in known.items()},
                unread=unread,
            )
            for i, feature in enumerate(_INDICATIONS)
        }
    return {}


def _diagnosis_of(value: str) -> tuple[bool, bool] | None:
    """(SSc, SLE) for a code that names a disease plainly, else None."""
    code = " ".join(value.upper().split())
    both = _BOTH.match(code)
    if both is not None and both[1] != both[2]:
        return True, True
    if code in _SSC_CODES:
        return True, False
    if code in _SLE_CODES:
        return False, True
    return None


def _registry_missing(columns: Sequence[SourceColumn], features: Mapping[str, Feature]) -> Missing:
    """The codes for unknown, judged in each column against the feature its name suggests
    (its values cannot say yet: a `-99` is what sinks a column's values)."""
    named: list[tuple[str, Sequence[str], Feature]] = []
    for column in columns:
        scored = [(s[0], f) for f in features.values() if (s := _by_name(column.name, f))]
        top = [f for score, f in scored if score == max(s for s, _ in scored)]
        if len(top) == 1:  # a name that fits two features says nothing of the range
            named.append((column.name, column.values, top[0]))
    return codings.registry_missing(named)


def _registry_decimal(proposals: tuple[Proposal, ...]) -> tuple[str | None, tuple[Proposal, ...]]:
    """`decimal: ","` for the whole registry where most number columns with decimals write
    a comma (then `decimal: "."` on those that write a point), else per column; a point is
    the default, said nowhere then."""
    marks = [p.decimal for p in proposals if p.decimal is not None]
    registry = "," if marks.count(",") * 2 > len(marks) else None
    default = registry or "."
    return registry, tuple(
        replace(p, decimal=None) if p.decimal == default else p for p in proposals
    )


def _key(columns: Sequence[SourceColumn]) -> str | None:
    """The patient key: a column named as keys are, else the first whose sample values are
    all different and not numbers (a measurement can be unique in a small sample too)."""
    by_name = {_normal(c.name): c.name for c in columns}
    named = next((by_name[k] for k in KEY_NAMES if k in by_name), None)
    if named is not None:
        return named
    return next(
        (c.name for c in columns if c.unique and any(_number(v) is None for v in c.values)),
        None,
    )


def _normal(name: str) -> str:
    """A column or label as words joined by `_`, without a unit part: "LVEF (%)" -> "lvef"."""
    return "_".join(_WORD.findall(_UNIT_PART.sub("", name).casefold()))


def _best(
    column: SourceColumn, features: Mapping[str, Feature], missing: Missing
) -> tuple[Proposal | None, tuple[str, ...]]:
    """The column's best feature: of those its name and values fit equally well, the one
    whose id its name is closest to, then whose id leaves the fewest words unsaid ("ILD":
    ild_present, not ild_progressive_12m), the others named in its comment; none where that
    still ties (then their ids, for the analyst)."""
    scored = [p for f in features.values() if (p := _score(column, f, missing)) is not None]
    top = [p for p in scored if p.score == max(p.score for p in scored) and p.score >= MATCHED]
    top.sort(key=_closeness)
    if len(top) > 1 and _closeness(top[0]) == _closeness(top[1]):
        return None, tuple(p.feature.id for p in top)
    if len(top) > 1:
        others = ", ".join(p.feature.id for p in top[1:])
        return replace(top[0], why=f"{top[0].why}; fits {others} as well: check"), ()
    return (top[0] if top else None), ()


def _closeness(proposal: Proposal) -> tuple[float, int]:
    """A sort key, closest first: the name's likeness to the id, then the id's words."""
    feature_id = proposal.feature.id
    likeness = SequenceMatcher(None, _normal(proposal.column.name), feature_id).ratio()
    return -round(likeness, 6), len(feature_id.split("_"))


def _score(column: SourceColumn, feature: Feature, missing: Missing) -> Proposal | None:
    named = _by_name(column.name, feature) or _by_choices(column, feature, missing)
    if named is None:
        return None
    score, why = named
    fit = _by_values(column, feature, missing)
    unit = _unit(column.name, feature)
    if unit is not None:  # a unit the feature converts from: the name meant this kind of value
        fit.said.append(f"unit {unit} from the name")
        fit.score += 10
    return Proposal(
        column,
        feature,
        score + fit.score,
        "; ".join([why, *fit.said]),
        unit,
        fit.codes,
        fit.unread,
        fit.decimal,
        tuple(fit.notes),
    )


def _by_name(name: str, feature: Feature) -> tuple[int, str] | None:
    normal = _normal(name)
    if not normal:
        return None
    if normal == feature.id:
        return 100, "named as the feature"
    if normal == _normal(feature.spec.label):
        return 90, f"named as its label ({feature.spec.label})"
    if feature.id in close_to(normal, [feature.id]):
        return 70, f"name close to {feature.id}"
    return _by_words({w for w in normal.split("_") if w not in UNIT_WORDS}, feature)


def _by_words(words: set[str], feature: Feature) -> tuple[int, str] | None:
    """The name's words (its unit's left out) all the feature's, or each the start of one
    of them: a registry's abbreviation ("crea" for creatinine)."""
    theirs = set(feature.id.split("_")) | set(_normal(feature.spec.label).split("_"))
    if not words:
        return None
    if words <= theirs:
        return 60, f"the name's words {', '.join(sorted(words))} are the feature's"
    if all(len(w) >= 3 and any(t.startswith(w) for t in theirs) for w in words):
        return 55, f"the name's {', '.join(sorted(words))} abbreviate the feature's words"
    return None


def _by_choices(column: SourceColumn, feature: Feature, missing: Missing) -> tuple[int, str] | None:
    """A column named otherwise whose values are all a choice's values or codes for them, two
    at least ("Gender" with F and M is `sex`); numbers and yes/no words say nothing."""
    if feature.type is not FeatureType.ENUM:
        return None
    values = [v.strip() for v in _known(column, missing)]
    allowed = list(feature.spec.values or [])
    if len(values) < 2 or any(_number(v) is not None for v in values):
        return None
    read = {v for v in values if v in allowed} | set(_codes(values, allowed))
    if read != set(values):
        return None
    return 40, f"its values are {feature.id}'s ({', '.join(allowed)})"


def _known(column: SourceColumn, missing: Missing) -> list[str]:
    """The sample's values less the codes for unknown, everyone's and the registry's."""
    gone = DEFAULT_MISSING | missing.folded()
    return [v for v in column.values if v.strip().casefold() not in gone]


@dataclass(slots=True)
class _Fit:
    """How a column's sample fits a feature: a score to add, what to say, the values that will
    not read, and what the mapping declares to read the rest (`values:`, `decimal:`), with
    the guesses and doubts the analyst must settle."""

    score: int
    said: list[str]
    unread: tuple[str, ...] = ()
    codes: dict[str, Code] = field(default_factory=dict)
    decimal: str | None = None
    notes: list[str] = field(default_factory=list)


def _by_values(column: SourceColumn, feature: Feature, missing: Missing) -> _Fit:
    values = _known(column, missing)
    if not values:
        return _Fit(0, ["no values in the sample"])
    if feature.type is FeatureType.NUMBER:
        return _numbers(values)
    if feature.type is FeatureType.BOOLEAN:
        return _yes_no(values)
    return _choices(column, values, feature, missing)


def _numbers(values: Sequence[str]) -> _Fit:
    """Numbers as the cell grammar reads them, with the decimal mark the values show."""
    mark, doubt = codings.decimal(values)
    unread = tuple(v for v in values if _number(v, mark == ",") is None)
    numbers = [n for v in values if (n := _number(v, mark == ",")) is not None]
    said = [f"numbers {_span(numbers)}"] if numbers else [f"values {_quoted(values)}"]
    if mark == ",":
        said.append(f"decimal comma ({next(v for v in values if ',' in v)})")
    fit = _Fit(-40 if len(unread) > len(values) // 2 else 10, said, unread, decimal=mark)
    fit.notes += [doubt] if doubt else []
    return fit


SPSS_NOTE = "1 = yes, 2 = no, 9 = unknown is SPSS's convention, not a rule: check the dictionary"


def _yes_no(values: Sequence[str]) -> _Fit:
    said = [f"values {_quoted(values)}"]
    spss = codings.spss_yes_no(values)
    if spss is not None:
        return _Fit(15, said, codes=spss, notes=[SPSS_NOTE])
    unread = tuple(v for v in values if v.strip().casefold() not in _BOOLEAN_WORDS)
    return _Fit(-30 if unread else 15, said, unread)


def _choices(
    column: SourceColumn, values: Sequence[str], feature: Feature, missing: Missing
) -> _Fit:
    """A choice's values as written, or codes for them: a value's start ("F"), else an
    abbreviation of exactly one value ("dcSSc"), said in a note; a registry code for unknown
    that would also start a value is read as unknown, said too."""
    allowed = list(feature.spec.values or [])
    codes: dict[str, Code] = dict(_codes(values, allowed))
    rest = [v.strip() for v in values if v.strip() not in allowed and v.strip() not in codes]
    abbreviations, several = codings.abbreviated(rest, allowed)
    codes.update(abbreviations)
    unread = tuple(v for v in values if v.strip() not in allowed and v.strip() not in codes)
    fit = _Fit(20 if not unread else -10, [f"values {_quoted(values)}"], unread, codes)
    if abbreviations:
        read = ", ".join(f"{c} as {v}" for c, v in abbreviations.items())
        fit.notes.append(f"read as abbreviations (their letters in the words, in order): {read}")
    if several:
        fit.notes.append(f"abbreviate more than one value, left to you: {', '.join(several)}")
    for code in (c for c in column.values if c in missing.codes):
        started = _codes([code], allowed)
        if started:
            fit.notes.append(
                f"{code} is declared missing (no value, as `missing:` says), not read as "
                f"the choice {started[code]}"
            )
    return fit


def _codes(values: Iterable[str], allowed: Sequence[str]) -> dict[str, str]:
    """A registry's code for a choice, where exactly one of the feature's values starts with
    it, without case ("F" -> female, "lim" -> limited)."""
    found: dict[str, str] = {}
    for value in values:
        code = value.strip()
        if not code or code in allowed:
            continue
        starts = [a for a in allowed if a.casefold().startswith(code.casefold())]
        if len(starts) == 1:
            found[code] = starts[0]
    return found


def _unit(name: str, feature: Feature) -> str | None:
    """The unit a column's name carries, where the feature converts from it and it is not
    the feature's own (which needs no `unit:`): written out ("Creatinine (mg/dL)",
    "crea[umol/L]") or as a unit word of one of the feature's units ("CREA_umol": µmol/L)."""
    if feature.type is not FeatureType.NUMBER:
        return None
    part = _UNIT_PART.search(name)
    tail = re.split(r"[_\s]+", name)[1:]
    for written in ([part.group(1).strip()] if part else []) + ["/".join(tail), *tail]:
        if not written:
            continue
        code = ucum(written)
        if code.casefold() == (feature.unit or "").casefold():
            return None  # the feature's own unit, maybe in another case: `G/G` is gauss/gauss
        try:
            linear = converter(code, feature.unit or "1", feature.spec.molar_mass)
        except UnitError:
            continue  # not a unit of the feature's dimension: no unit proposed from it
        return None if linear == IDENTITY else written
    return _unit_by_words(tail, feature)


def _unit_by_words(tail: Sequence[str], feature: Feature) -> str | None:
    """The unit the name's last words spell the start of ("CREA_umol": µmol/L), among the
    feature's own and the catalogue's other units. Only a unit the words single out is
    proposed: `ML_MIN` is the canonical mL/min (no `unit:` needed), never mL/s, whose words
    also start with "ml" (a clearance 60 times off); words that fit several units propose
    none."""
    said: list[str] = []
    for word in reversed(tail):  # the trailing run of unit words: "CLEA_ML_MIN" -> ml, min
        if word.casefold() not in UNIT_WORDS:
            break
        said.insert(0, word.casefold())
    if not said:
        return None
    units = [feature.unit or "1", *feature.spec.other_units]
    fits = [u for u in units if _plain_words(u)[: len(said)] == said]
    if len(fits) != 1 or fits[0] == feature.unit:
        return None
    return unit_words(fits[0])


def _plain_words(unit: str) -> list[str]:
    """A unit as the words a column name would spell it: "µmol/L" -> ["umol", "l"]."""
    plain = unit_words(unit).casefold().replace("µ", "u").replace("μ", "u")
    return re.findall(r"[a-z0-9]+", plain)


def _number(text: str, comma: bool = False) -> float | None:
    """A number as `eligo screen` reads it (the one cell grammar), else None."""
    read = cells.read(text, FeatureType.NUMBER, cells.Grammar(decimal_comma=comma))
    return None if isinstance(read, cells.Unknown | cells.Problem) else float(read)


def _span(numbers: Sequence[float]) -> str:
    low, high = min(numbers), max(numbers)
    return f"{low:g}" if low == high else f"{low:g}–{high:g}"


def _quoted(values: Sequence[str]) -> str:
    head = ", ".join(values[:SHOWN_VALUES])
    return head + (f" and {len(values) - SHOWN_VALUES} more" if len(values) > SHOWN_VALUES else "")


# --- the file ---------------------------------------------------------------------------------


def render(starter: Starter, source: str, on: date) -> str:
    """The mapping file: YAML that `eligo screen --mapping` takes as written, every proposal
    with its reasons in a comment, the columns left out listed at the end."""
    lines = [
        f"# A starter mapping for {source}, proposed by `eligo mapping init` on {on.isoformat()}.",
        "# Check every line against the registry's data dictionary before screening: a column is",
        "# proposed for a feature by its name and a sample of its values, which can mislead.",
        "# Feature ids, units and values: GET /v1/features, or docs/FEATURES.md.",
    ]
    if starter.key is None:
        lines += ["# No patient key column found by name: name it here.", "id: id"]
    else:
        lines.append(f"id: {yaml_scalar(starter.key)}")
    lines += _missing_lines(starter.missing)
    if starter.decimal is not None:
        lines.append(
            f"decimal: {yaml_scalar(starter.decimal)}  # most number columns with decimals "
            'write a comma (8,5); those with a point say decimal: "."'
        )
    lines.append("columns:")
    if not starter.proposals:
        lines.append("  {}  # no column matched a feature; map them by hand")
    for proposal in starter.proposals:
        lines += _entry(proposal)
    if starter.unmatched:
        lines.append("# Not matched to a feature (left out of screening unless mapped here):")
        lines += [_unmatched(c, starter.tied.get(c.name, ())) for c in starter.unmatched]
    return "\n".join(lines) + "\n"


def _unmatched(column: SourceColumn, tied: Sequence[str]) -> str:
    line = f"#   {column.name}: values {_quoted(list(column.values)) or 'none'}"
    return line + (f" (fits {' and '.join(tied)} alike: yours to decide)" if tied else "")


def _missing_lines(missing: Missing) -> list[str]:
    """`missing:` with where each code was seen, and the codes left to the analyst."""
    lines: list[str] = []
    if missing.codes:
        codes = ", ".join(yaml_scalar(c) for c in missing.codes)
        lines.append(f"missing: [{codes}]  # the registry's codes for unknown, seen in:")
        lines += [
            f"#   {code}: {len(seen)} column(s): {_quoted(list(seen))}"
            for code, seen in missing.codes.items()
        ]
    lines += [f"# Not declared missing: {why}" for why in missing.doubtful.values()]
    return lines


def _entry(p: Proposal) -> list[str]:
    spec: list[str] = [f"column: {yaml_scalar(p.column.name)}"]
    if p.unit is not None:
        spec.append(f"unit: {yaml_scalar(p.unit)}")
    if p.decimal is not None:
        spec.append(f"decimal: {yaml_scalar(p.decimal)}")
    if p.codes:
        codes = ", ".join(f"{yaml_scalar(k)}: {_yaml_value(v)}" for k, v in p.codes.items())
        spec.append(f"values: {{{codes}}}")
    body = yaml_scalar(p.column.name) if len(spec) == 1 else "{" + ", ".join(spec) + "}"
    lines = [f"  {p.feature.id}: {body}  # {p.why}"]
    lines += [f"  # {p.column.name}: {note}" for note in p.notes]
    if p.unread:
        lines.append(
            f"  # {p.column.name}: {_quoted(list(p.unread))} will not read as "
            f"{p.feature.spec.label}: recode or check them"
        )
    return lines


def _yaml_value(value: Code) -> str:
    """A `values:` target as YAML: true, false, null, a number, or a choice's value."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value) if isinstance(value, int | float) else yaml_scalar(value)


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ()%/.\-]*$")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})


def yaml_scalar(text: str) -> str:
    """A YAML scalar that reads back as this text: plain where that is safe, else quoted."""
    if _PLAIN.match(text) and text.casefold() not in _YAML_WORDS and not text.endswith(" "):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the source -------------------------------------------------------------------------------


def read_columns(path: Path, limits: Limits) -> list[SourceColumn]:
    """The source's columns with the distinct values of its first SAMPLE_ROWS rows, as text.
    The header is checked within its limits first (head.py), as for `eligo screen`."""
    import duckdb  # noqa: PLC0415  # only this command and screening need it

    fmt = file_format(path)
    head.check(path, fmt, limits)
    quoted = "'" + str(path).replace("'", "''") + "'"
    reader = {
        "csv": head.csv_scan(quoted),
        "parquet": f"read_parquet({quoted})",
    }.get(fmt, f"read_json({quoted}, format = 'newline_delimited')")
    connection = duckdb.connect()
    try:
        table = connection.sql(f"SELECT * FROM {reader} LIMIT {SAMPLE_ROWS}").to_arrow_table()  # noqa: S608
    except duckdb.Error as exc:
        raise SourceError(f"{path}: {str(exc).splitlines()[0]}") from None
    finally:
        connection.close()
    return [_column(name, table.column(name).to_pylist()) for name in table.column_names]


def _column(name: str, cells: list[object]) -> SourceColumn:
    texts = [_text(v) for v in cells if v is not None]
    distinct = tuple(dict.fromkeys(t for t in texts if t))
    return SourceColumn(name, distinct, unique=len(distinct) == len(cells) > 1)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
