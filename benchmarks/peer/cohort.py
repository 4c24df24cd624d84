"""The peer cohort of shared/docs/BENCHMARK.md: made-up patients for the peer rule set.

    .venv/bin/python -m benchmarks.peer.cohort --n 1000000 --out DIR [--seed 2026] [--no-jsonl]

SYNTHETIC, NOT CLINICALLY CALIBRATED. About 60 % of patients have SSc; each of the 16
features the peer rule set reads has a plausible distribution for a rheumatology registry (SSc
patients have higher skin scores, more ILD, lower DLCO, some pulmonary hypertension and prior
cyclophosphamide), rounded as clinical data are (integers, or one decimal for disease duration
and cyclophosphamide grams), so exact threshold values (age 65, DLCO 40, mPAP 50, 5.0 g, ...)
occur often. Then every value, the diagnosis included, is blanked independently with
probability 0.15.

Rows come in blocks of BLOCK patients, block k drawn from numpy's generator seeded by
(seed, k): patient i depends only on the seed and i, so the first 2,000 patients of a cohort
of 1,000,000 are the cohort of 2,000.

Files: `peer-cohort-<n>.jsonl` (one flat object a line: "id", then the known features; a
missing value is an absent key; integer-rounded features are JSON integers) and
`peer-cohort-<n>.parquet` (`id`, then one column per feature: float64 numbers, bool booleans;
missing is NULL), the layout `eligo screen` reads without a mapping.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

BLOCK = 65_536
SEED = 2026
MISSING = 0.15
SSC_SHARE = 0.6

# Feature -> decimals kept (numbers) or None (booleans), in BENCHMARK.md's order.
FEATURES: dict[str, int | None] = {
    "ssc_diagnosis": None,
    "age_years": 0,
    "disease_duration_years": 1,
    "mrss": 0,
    "ild_present": None,
    "lvef_percent": 0,
    "renal_crisis_history": None,
    "dlco_percent_predicted": 0,
    "pao2_mmhg": 0,
    "mpap_mmhg": 0,
    "creatinine_clearance_ml_min": 0,
    "prior_cyclophosphamide_iv_g": 1,
    "prior_cyclophosphamide_oral_months": 0,
    "uncontrolled_hypertension": None,
    "uncontrolled_arrhythmia": None,
    "pregnant": None,
}

Array = NDArray[Any]


def _normal(  # noqa: PLR0917 - a distribution and its clipping, positionally
    rng: np.random.Generator,
    n: int,
    mean: Array | float,
    sd: Array | float,
    low: float,
    high: float,
) -> Array:
    return np.clip(rng.normal(mean, sd, n), low, high)


def _block(rng: np.random.Generator, n: int) -> dict[str, Array]:
    """The complete records of one block, before blanking."""
    ssc = rng.random(n) < SSC_SHARE
    diffuse = ssc & (rng.random(n) < 0.5)
    ild = rng.random(n) < np.where(ssc, 0.45, 0.08)
    ph = ssc & (rng.random(n) < 0.2)
    given_iv = rng.random(n) < np.where(ssc, 0.35, 0.05)
    courses = rng.integers(1, 13, n)
    per_course = rng.choice([0.5, 0.75, 1.0], n)
    given_oral = rng.random(n) < np.where(ssc, 0.15, 0.03)
    return {
        "ssc_diagnosis": ssc,
        "age_years": _normal(rng, n, np.where(ssc, 48, 52), np.where(ssc, 13, 16), 12, 90),
        "disease_duration_years": np.clip(
            rng.gamma(np.where(ssc, 1.6, 2.0), np.where(ssc, 2.8, 4.0)), 0, 40
        ),
        "mrss": np.where(
            ssc,
            _normal(rng, n, np.where(diffuse, 22, 8), np.where(diffuse, 9, 5), 0, 51),
            _normal(rng, n, 1, 2, 0, 51),
        ),
        "ild_present": ild,
        "lvef_percent": _normal(rng, n, np.where(ssc, 58, 61), 8, 15, 80),
        "renal_crisis_history": rng.random(n) < np.where(ssc, 0.05, 0.005),
        "dlco_percent_predicted": _normal(rng, n, np.where(ild, 52, 76), 16, 10, 140),
        "pao2_mmhg": _normal(rng, n, np.where(ild, 74, 85), 11, 35, 110),
        "mpap_mmhg": np.where(ph, _normal(rng, n, 38, 12, 8, 90), _normal(rng, n, 18, 4, 8, 90)),
        "creatinine_clearance_ml_min": _normal(rng, n, 88, 25, 8, 180),
        "prior_cyclophosphamide_iv_g": np.where(given_iv, courses * per_course, 0.0),
        "prior_cyclophosphamide_oral_months": np.where(given_oral, rng.integers(1, 13, n), 0),
        "uncontrolled_hypertension": rng.random(n) < 0.08,
        "uncontrolled_arrhythmia": rng.random(n) < 0.05,
        "pregnant": rng.random(n) < 0.03,
    }


def _block_table(seed: int, k: int, start: int, stop: int) -> pa.Table:
    rng = np.random.default_rng([seed, k])
    true = _block(rng, BLOCK)
    known = rng.random((len(FEATURES), BLOCK)) >= MISSING
    rows = slice(start - k * BLOCK, stop - k * BLOCK)
    columns: dict[str, pa.Array] = {
        "id": pa.array([f"P{i:07d}" for i in range(start + 1, stop + 1)], pa.string())
    }
    for j, (name, decimals) in enumerate(FEATURES.items()):
        mask = ~known[j, rows]
        if decimals is None:
            columns[name] = pa.array(true[name][rows].astype(bool), pa.bool_(), mask=mask)
        else:
            values = np.round(true[name][rows].astype(np.float64), decimals)
            columns[name] = pa.array(values, pa.float64(), mask=mask)
    return pa.table(columns)


def tables(n: int, seed: int = SEED) -> Iterator[pa.Table]:
    """The cohort of `n` patients, one table per block (or part of one)."""
    for k in range((n + BLOCK - 1) // BLOCK):
        yield _block_table(seed, k, k * BLOCK, min(n, (k + 1) * BLOCK))


def table(n: int, seed: int = SEED) -> pa.Table:
    return pa.concat_tables(tables(n, seed))


def rows(part: pa.Table) -> Iterator[dict[str, Any]]:
    """Rows as the JSONL holds them: missing values left out, integer-rounded features as
    integers (what `json.loads` of a line gives)."""
    integers = {name for name, decimals in FEATURES.items() if decimals == 0}
    for row in part.to_pylist():
        yield {
            key: (int(value) if key in integers else value)
            for key, value in row.items()
            if value is not None
        }


def patients(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """The first `n` patients' features, as parsed JSON (the "id" left out)."""
    found: list[dict[str, Any]] = []
    for part in tables(n, seed):
        for row in rows(part):
            del row["id"]
            found.append(row)
    return found


def write(n: int, folder: Path, seed: int = SEED, *, jsonl: bool = True) -> tuple[Path, Path]:
    """Write (or reuse) peer-cohort-<n>[-<seed>].jsonl and .parquet in `folder`."""
    stem = f"peer-cohort-{n}" + ("" if seed == SEED else f"-{seed}")
    parquet, lines = folder / f"{stem}.parquet", folder / f"{stem}.jsonl"
    if not parquet.exists():
        partial = parquet.with_suffix(".parquet.partial")
        with pq.ParquetWriter(partial, next(iter(tables(1, seed))).schema) as writer:
            for part in tables(n, seed):
                writer.write_table(part)
        partial.rename(parquet)
    if jsonl and not lines.exists():
        partial = lines.with_suffix(".jsonl.partial")
        with partial.open("w", encoding="utf-8") as out:
            for part in tables(n, seed):
                out.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows(part))
        partial.rename(lines)
    return lines, parquet


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The patients' features from a JSONL file, parsed (the "id" left out)."""
    found: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if limit is not None and len(found) >= limit:
                break
            row = json.loads(line)
            del row["id"]
            found.append(row)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="Folder")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-jsonl", action="store_true", help="Parquet only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines, parquet = write(args.n, args.out, args.seed, jsonl=not args.no_jsonl)
    print(f"wrote {args.n:,} peer patients: {parquet}" + ("" if args.no_jsonl else f", {lines}"))


if __name__ == "__main__":
    main()
