"""The synthetic cohort written as a registry writes it (`eligo synth --codings registry`).

The same patients as `synth.batches` (same seed, same rows, same ids), coded the way registry
exports are, so that screening a registry's own file is tested on data that looks like one:

- its own column names: upper-case and abbreviated (`PAT_ID`, `AGE`, `LVEF`, `MRSS`), some
  with a unit in the name (`CREA_umol`, `HB_gL`), the rest abbreviated from the feature id
  word by word (`PRIO_CYCL_IV_COUR`);
- one diagnosis column `DX` (SSC, SLE, SSC+SLE, OTHER, and codes for a record that knows one
  diagnosis but not the other) instead of two yes/no features;
- yes/no as SPSS codes 1/2 with 9 for unknown, or as Y/N (by a stable hash of the feature id);
- choices as registry codes (`dcSSc`, `lcSSc`; sex F/M/O/X);
- unknown written several ways in one file: blank, `NA`, `n/a`, `U` (text) or `-99`
  (numbers), `9` in SPSS yes/no columns;
- a decimal comma in some numeric columns, and some values in another unit (creatinine and
  bilirubin in µmol/L, haemoglobin in g/L, TAPSE in mm): written with the fewest decimals
  that read back, through the engine's own converter, as exactly the plain cohort's value;
- an mRSS of 0 as `<1` (a numeric code the mapping's `values:` reads).

`mapping()` gives the mapping file that reads it back (`id:`, `missing:`, and per feature
`column:`, `unit:`, `decimal:` and `values:`), so screening the registry file with it gives
row for row the results of the plain cohort of the same seed. What a column is called and
how it is coded is fixed per feature (never drawn); only which code stands for an unknown
cell is drawn, from its own stream per block, so a chunk size never changes the file.

SYNTHETIC DATA, as `synth` says: the codings are made up to look like a registry's, not
copied from any registry.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from app.batch.starter import yaml_scalar
from app.batch.synth import BLOCK, CHUNK, batches
from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.engine.unit_names import ucum
from app.engine.units import Linear, UnitError, converter

KEY = "PAT_ID"
DX = "DX"
DIAGNOSES = ("ssc_diagnosis", "sle_diagnosis")  # the two features the DX column gives
MISSING = ("U", "-99")  # the registry's own codes for unknown, declared in the mapping
_TAG = 0x52454749  # "REGI": the codings' random stream, apart from the patients'

# (ssc_diagnosis, sle_diagnosis) -> DX code; None is unknown. Both unknown: a missing code.
DX_CODES: dict[tuple[bool | None, bool | None], str] = {
    (True, False): "SSC",
    (False, True): "SLE",
    (True, True): "SSC+SLE",
    (False, False): "OTHER",
    (True, None): "SSC (SLE NK)",
    (None, True): "SLE (SSC NK)",
    (False, None): "NOT SSC (SLE NK)",
    (None, False): "NOT SLE (SSC NK)",
}

# Registry names of the best-known items; every other feature's is abbreviated from its id.
NAMES: dict[str, str] = {
    "age_years": "AGE",
    "sex": "SEX",
    "ssc_subtype": "SSC_SUBSET",
    "disease_duration_years": "DIS_DUR_Y",
    "mrss": "MRSS",
    "sledai_2k": "SLEDAI",
    "ild_present": "ILD",
    "fvc_percent_predicted": "FVC_PCT",
    "dlco_percent_predicted": "DLCO_PCT",
    "pao2_mmhg": "PAO2_mmHg",
    "spo2_percent": "SPO2",
    "lvef_percent": "LVEF",
    "nyha_class": "NYHA",
    "mpap_mmhg": "MPAP_RHC",
    "pasp_mmhg": "SPAP_ECHO",
    "pah_diagnosis": "PAH",
    "egfr": "EGFR",
    "serum_creatinine": "CREA_umol",
    "proteinuria_g_24h": "PROT_24H",
    "dialysis": "DIALYSIS",
    "lupus_nephritis_class": "LN_CLASS",
    "prednisone_mg_day": "PRED_MG",
    "current_smoker": "SMOKER",
    "pregnant": "PREG",
    "active_infection": "INFECT",
    "active_malignancy": "CANCER_ACT",
    "crp_mg_l": "CRP_mgL",
    "esr_mm_h": "ESR",
    "hemoglobin_g_dl": "HB_gL",
    "bilirubin_total_mg_dl": "BILI_umol",
    "tapse_cm": "TAPSE_mm",
    "ecog": "ECOG",
}

# Values a registry records in another unit than the catalogue's canonical one (the unit as
# the registry spells it; the mapping declares it, the engine converts it).
UNITS: dict[str, str] = {
    "serum_creatinine": "µmol/L",
    "bilirubin_total_mg_dl": "µmol/L",
    "hemoglobin_g_dl": "g/L",
    "tapse_cm": "mm",
}

# Numeric columns written with a decimal comma (as a German or French export would).
DECIMAL_COMMA = frozenset(
    {
        "serum_creatinine",
        "disease_duration_years",
        "crp_mg_l",
        "proteinuria_g_24h",
        "bilirubin_x_uln",
        "alt_x_uln",
        "ast_x_uln",
        "prednisone_mg_day",
        "pvr_wood_units",
        "upcr_g_g",
    }
)

# Choices as registry codes; a value not listed is written as the catalogue names it.
CODES: dict[str, dict[str, str]] = {
    "sex": {"female": "F", "male": "M", "other": "O", "unknown": "X"},
    "ssc_subtype": {
        "diffuse_cutaneous": "dcSSc",
        "limited_cutaneous": "lcSSc",
        "sine_scleroderma": "ssSSc",
    },
}

# Numbers written as a code (an mRSS of 0 as "<1").
NUMBER_CODES: dict[str, dict[float, str]] = {"mrss": {0.0: "<1"}}


class Kind(StrEnum):
    """How a column writes its values."""

    NUMBER = "number"
    SPSS = "spss"  # yes/no as 1/2, 9 for unknown
    YES_NO = "yes_no"  # yes/no as Y/N
    CHOICE = "choice"
    DIAGNOSIS = "diagnosis"  # DX: two yes/no features in one column


# The codes a column writes for an unknown cell, one drawn per cell.
_UNKNOWN: dict[Kind, tuple[str, ...]] = {
    Kind.NUMBER: ("", "NA", "-99", "n/a"),
    Kind.SPSS: ("", "9", "9", "NA"),
    Kind.YES_NO: ("", "U", "NA", "n/a"),
    Kind.CHOICE: ("", "U", "NA", "n/a"),
    Kind.DIAGNOSIS: ("", "U", "NA"),
}


@dataclass(frozen=True, slots=True)
class RegistryColumn:
    """One column of the registry file and the features it gives."""

    name: str
    kind: Kind
    features: tuple[Feature, ...]
    unit: str | None = None  # a number's unit as the registry writes it; None: canonical
    to_canonical: Linear | None = None  # unit -> the catalogue's unit, as screening converts
    decimal_comma: bool = False
    codes: Mapping[str, str] = field(default_factory=dict)  # feature value -> registry code
    number_codes: Mapping[float, str] = field(default_factory=dict)


def columns(features: Mapping[str, Feature]) -> tuple[RegistryColumn, ...]:
    """The registry's columns, in catalogue order (DX where ssc_diagnosis is)."""
    result: list[RegistryColumn] = []
    taken = {KEY, DX}
    for fid, feature in features.items():
        if fid in DIAGNOSES and all(d in features for d in DIAGNOSES):
            if fid == DIAGNOSES[0]:
                pair = tuple(features[d] for d in DIAGNOSES)
                result.append(RegistryColumn(DX, Kind.DIAGNOSIS, pair))
            continue
        name = _unique(NAMES.get(fid) or _abbreviated(fid), taken)
        taken.add(name)
        result.append(_column(name, feature))
    return tuple(result)


def _abbreviated(fid: str) -> str:
    """A registry-style name from a feature id: each word's first four letters, upper-case
    (prior_cyclophosphamide_iv_courses -> PRIO_CYCL_IV_COUR)."""
    return "_".join(word[:4].upper() for word in fid.split("_"))


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}{number}", number + 1
    return candidate


def _column(name: str, feature: Feature) -> RegistryColumn:
    fid = feature.id
    if feature.type is FeatureType.BOOLEAN:
        # A stable choice per feature (not its position): a new feature changes no other.
        spss = zlib.crc32(fid.encode()) % 3 != 0
        return RegistryColumn(name, Kind.SPSS if spss else Kind.YES_NO, (feature,))
    if feature.type is FeatureType.ENUM:
        return RegistryColumn(name, Kind.CHOICE, (feature,), codes=CODES.get(fid, {}))
    unit, to_canonical = _unit(feature)
    return RegistryColumn(
        name,
        Kind.NUMBER,
        (feature,),
        unit=unit,
        to_canonical=to_canonical,
        decimal_comma=fid in DECIMAL_COMMA,
        number_codes=NUMBER_CODES.get(fid, {}),
    )


def _unit(feature: Feature) -> tuple[str | None, Linear | None]:
    """The registry's unit for a feature, where it converts to the catalogue's (a catalogue
    that changed the unit gets its canonical unit instead)."""
    unit = UNITS.get(feature.id)
    if unit is None or feature.unit is None:
        return None, None
    try:
        linear = converter(ucum(unit), feature.unit, feature.spec.molar_mass)
    except UnitError:
        return None, None
    if linear.offset != 0 or linear.scale == 1:
        return None, None
    return unit, linear


def registry_batches(
    n: int, features: Mapping[str, Feature], *, seed: int = 0, chunk: int = CHUNK
) -> Iterator[pa.Table]:
    """The cohort of `synth.batches`, coded as a registry: every column text."""
    layout = columns(features)
    plain = batches(n, features, seed=seed, chunk=chunk)  # checks arguments and catalogue now
    return _coded(plain, layout, seed)


def _coded(
    plain: Iterator[pa.Table], layout: tuple[RegistryColumn, ...], seed: int
) -> Iterator[pa.Table]:
    start = 0
    for table in plain:
        draws = _draws(seed, start, table.num_rows, len(layout))
        arrays = [table["id"].combine_chunks()]
        arrays += [_written(c, table, draws[i]) for i, c in enumerate(layout)]
        yield pa.Table.from_arrays(arrays, schema=registry_schema(layout))
        start += table.num_rows


def registry_schema(layout: tuple[RegistryColumn, ...]) -> pa.Schema:
    return pa.schema(
        [pa.field(KEY, pa.string(), nullable=False)]
        + [pa.field(c.name, pa.string()) for c in layout]
    )


def _draws(seed: int, start: int, count: int, width: int) -> NDArray[np.uint8]:
    """Per column and row a random byte choosing an unknown cell's code: block k of rows from
    its own stream seeded by (seed, k), as the patients are, so the chunk never matters."""
    first, last = start // BLOCK, -(-(start + count) // BLOCK)
    blocks = [
        np.random.default_rng([seed, k, _TAG]).integers(0, 256, (width, BLOCK), dtype=np.uint8)
        for k in range(first, last)
    ]
    offset = start - first * BLOCK
    return np.concatenate(blocks, axis=1)[:, offset : offset + count]


def _written(column: RegistryColumn, table: pa.Table, draws: NDArray[np.uint8]) -> pa.Array:
    """One registry column as text, an unknown cell written as one of its kind's codes."""
    if column.kind is Kind.DIAGNOSIS:
        text = _diagnosis(*(table[f.id].combine_chunks() for f in column.features))
    else:
        text = _text(column, table[column.features[0].id].combine_chunks())
    unknown = pa.array(_UNKNOWN[column.kind], pa.string())
    fill = unknown.take(pa.array(draws % len(unknown)))
    return pc.if_else(pc.is_valid(text), text, fill)


def _text(column: RegistryColumn, values: pa.Array) -> pa.Array:
    if column.kind is Kind.NUMBER:
        return _number(column, values)
    if column.kind is Kind.CHOICE:
        dictionary = values.dictionary.to_pylist()
        coded = pa.array([column.codes.get(v, v) for v in dictionary], pa.string())
        return coded.take(values.indices)
    true, false = ("1", "2") if column.kind is Kind.SPSS else ("Y", "N")
    return pc.if_else(values, true, false)


def _number(column: RegistryColumn, values: pa.Array) -> pa.Array:
    if column.to_canonical is not None:
        text = _converted(values, column.to_canonical)
    else:
        text = pc.cast(values, pa.string())
    if column.decimal_comma:
        text = pc.replace_substring(text, ".", ",")
    for number, code in column.number_codes.items():
        text = pc.if_else(pc.equal(values, number), code, text)
    return text


def _converted(values: pa.Array, to_canonical: Linear) -> pa.Array:
    """Canonical values in the registry's unit, each with the fewest decimals that screening
    converts back (`to_canonical`, the engine's own rounding) to exactly the value: 0.87 mg/dL
    is written 76.9095 µmol/L. Computed once per distinct value (a few thousand)."""
    numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    known = ~np.isnan(numbers)
    distinct, where = np.unique(numbers[known], return_inverse=True)
    texts = np.array([_exact(float(v), to_canonical) for v in distinct], dtype=object)
    out = np.full(len(numbers), None, dtype=object)
    out[known] = texts[where]
    return pa.array(out, pa.string())


def _exact(value: float, to_canonical: Linear) -> str:
    registry = value / to_canonical.scale
    for decimals in range(0, 13):
        written = round(registry, decimals)
        if to_canonical(written) == value:
            return f"{written:.{decimals}f}"
    return repr(registry)  # never reached for a value of nine significant digits or fewer


def _diagnosis(ssc: pa.Array, sle: pa.Array) -> pa.Array:
    """DX from the two diagnoses, known or not (a code per combination; both unknown: null)."""
    states = {True: 0, False: 1, None: 2}  # a diagnosis: true, false or unknown
    lookup = np.full(9, len(DX_CODES), dtype=np.int8)  # (ssc, sle) -> DX_CODES index
    for i, (a, b) in enumerate(DX_CODES):
        lookup[3 * states[a] + states[b]] = i
    combined = 3 * _state(ssc) + _state(sle)
    return pa.array([*DX_CODES.values(), None], pa.string()).take(pa.array(lookup[combined]))


def _state(values: pa.Array) -> NDArray[np.int8]:
    """0 true, 1 false, 2 unknown."""
    flags = np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    known = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return np.where(known, np.where(flags, 0, 1), 2).astype(np.int8)


def write_registry_csv(
    n: int, features: Mapping[str, Feature], path: Path, *, seed: int = 0, chunk: int = CHUNK
) -> None:
    """Stream the registry-coded cohort into a CSV file (every cell quoted text)."""
    layout = columns(features)
    tables = registry_batches(n, features, seed=seed, chunk=chunk)
    with pacsv.CSVWriter(path, registry_schema(layout)) as writer:
        for table in tables:
            writer.write_table(table)


def mapping(features: Mapping[str, Feature], source: str = "registry.csv") -> str:
    """The mapping file (YAML) that reads the registry file back as the plain cohort."""
    lines = [
        f"# Mapping for {source}: a synthetic registry written by `eligo synth --codings",
        "# registry` (made-up patients and codings). Reads it back as the plain cohort.",
        f"id: {KEY}",
        f"missing: [{', '.join(_scalar(m) for m in MISSING)}]",
        "columns:",
    ]
    for column in columns(features):
        lines += [f"  {f.id}: {_entry(column, f)}" for f in column.features]
    return "\n".join(lines) + "\n"


def _entry(column: RegistryColumn, feature: Feature) -> str:
    parts = [f"column: {_scalar(column.name)}"]
    if column.unit is not None:
        parts.append(f"unit: {_scalar(column.unit)}")
    if column.decimal_comma:
        parts.append('decimal: ","')
    values = _values(column, feature)
    if values:
        parts.append("values: {" + ", ".join(f"{_scalar(k)}: {v}" for k, v in values) + "}")
    return "{" + ", ".join(parts) + "}" if len(parts) > 1 else _scalar(column.name)


def _values(column: RegistryColumn, feature: Feature) -> list[tuple[str, str]]:
    """A column's `values:` for a feature: registry code -> the feature's value (YAML)."""
    if column.kind is Kind.SPSS:
        return [("1", "true"), ("2", "false"), ("9", "null")]
    if column.kind is Kind.YES_NO:
        return [("Y", "true"), ("N", "false")]
    if column.kind is Kind.CHOICE:
        return [(code, _scalar(value)) for value, code in column.codes.items()]
    if column.kind is Kind.NUMBER:
        return [(code, _number_literal(n)) for n, code in column.number_codes.items()]
    position = column.features.index(feature)
    words = {True: "true", False: "false", None: "null"}
    return [(code, words[pair[position]]) for pair, code in DX_CODES.items()]


def _number_literal(number: float) -> str:
    return str(int(number)) if number == math.floor(number) else repr(number)


def _scalar(text: str) -> str:
    """YAML text that reads back as this string (codes such as 1, 9 or -99 stay text)."""
    if text.lstrip("+-").replace(".", "", 1).isdigit():
        return f'"{text}"'
    return yaml_scalar(text)
