"""The registry floor: the peer rule set of shared/docs/BENCHMARK.md as one hand-written DuckDB
query over the Parquet cohort, written to Parquet with COPY.

    .venv/bin/python -m benchmarks.peer.floor_sql COHORT.parquet OUT.parquet [--threads 2]

Each criterion is a boolean expression over its column, and SQL's NULL is Kleene's unknown
(`NULL < 40` is NULL, `NULL OR TRUE` is TRUE), so a criterion is NULL exactly when it is
unknown; the status is a CASE in BENCHMARK.md's order. The output has the patient's `id`, the
`status` and one nullable boolean per criterion: what Eligo's screening gives per rule set
(without its `excluded_by`, `missing:` columns, report and funnels).

Run as its own process by benchmarks/bench_screen.py, process start included; it imports
duckdb and nothing of Eligo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb

CRITERIA = {
    "inc_ssc": "ssc_diagnosis",
    "inc_age": "age_years BETWEEN 18 AND 65",
    "inc_duration": "disease_duration_years <= 4",
    "inc_mrss": "mrss > 14",
    "inc_organ": "ild_present OR lvef_percent < 50 OR renal_crisis_history",
    "exc_dlco": "dlco_percent_predicted < 40",
    "exc_pao2": "pao2_mmhg < 60",
    "exc_mpap": "mpap_mmhg > 50",
    "exc_lvef": "lvef_percent < 45",
    "exc_crcl": "creatinine_clearance_ml_min < 40",
    "exc_cyc_iv": "prior_cyclophosphamide_iv_g > 5",
    "exc_cyc_oral": "prior_cyclophosphamide_oral_months > 3",
    "exc_htn": "uncontrolled_hypertension",
    "exc_arrhythmia": "uncontrolled_arrhythmia",
    "exc_pregnant": "pregnant",
}
INCLUSIONS = [c for c in CRITERIA if c.startswith("inc_") and c != "inc_ssc"]
EXCLUSIONS = [c for c in CRITERIA if c.startswith("exc_")]


def query(source: str) -> str:
    """The SELECT over the Parquet file `source` (quoted here: a benchmark's own path)."""
    failing = " OR ".join(
        [*(f"{c} IS FALSE" for c in INCLUSIONS), *(f"{c} IS TRUE" for c in EXCLUSIONS)]
    )
    passing = " AND ".join(
        [
            "inc_ssc IS TRUE",
            *(f"{c} IS TRUE" for c in INCLUSIONS),
            *(f"{c} IS FALSE" for c in EXCLUSIONS),
        ]
    )
    criteria = ",\n    ".join(f"({sql}) AS {name}" for name, sql in CRITERIA.items())
    literal = "'" + source.replace("'", "''") + "'"
    return f"""
SELECT id,
  CASE
    WHEN inc_ssc IS FALSE THEN 'not_indicated'
    WHEN {failing} THEN 'ineligible'
    WHEN {passing} THEN 'eligible'
    ELSE 'indeterminate'
  END AS status,
  {", ".join(CRITERIA)}
FROM (
  SELECT id,
    {criteria}
  FROM read_parquet({literal})
)"""  # noqa: S608 - this benchmark's own column names and path


def run(source: Path, out: Path, threads: int = 2) -> None:
    connection = duckdb.connect()
    connection.execute(f"SET threads = {int(threads)}")
    target = "'" + str(out).replace("'", "''") + "'"
    connection.execute(f"COPY ({query(str(source))}) TO {target} (FORMAT parquet)")
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    run(args.source, args.out, args.threads)


if __name__ == "__main__":
    main()
