"""Bytes the audit trail stores per decision, against the bytes of the answer sent.

    .venv/bin/python -m benchmarks.bench_audit [--database sqlite|postgres] [--patients 200]

Runs the application in process on a fresh database (a SQLite file, or a new database on the
local PostgreSQL), records `--patients` evaluations against every shipped rule set and as many
against one (ASTIS), and prints per evaluation: the answer's bytes, the `result` column, the
whole row with its inputs and decision rows, and the growth of the database on disk (PostgreSQL:
relation sizes after VACUUM, TOAST compression included; SQLite: the file). The ratio is the
stored row to the answer sent. Rule set versions are stored once per version and not counted
per decision (they are printed apart).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from app.db.models import Evaluation, EvaluationDecision
from app.main import create_app
from app.settings import Settings
from benchmarks.patients import random_patient
from tests.databases import database

_TABLES = ("evaluations", "evaluation_decisions", "ruleset_versions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--patients", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database(args.database, Path(tmp)) as url:
        settings = Settings(database_url=url, auth=False)
        with TestClient(create_app(settings)) as client:
            rules = client.app.state.rules  # type: ignore[attr-defined]
            rng = random.Random(18)
            print(f"{args.database}: {args.patients} patients, one evaluation each per line")
            for label, chosen in (("all rule sets", None), ("one rule set", ["hsct-ssc-astis"])):
                before = _sizes(url, args.database, Path(tmp))
                sent = []
                for _ in range(args.patients):
                    body = {"features": random_patient(rules, rng), "rulesets": chosen}
                    response = client.post(
                        "/v1/evaluations", json=body, headers={"Accept-Encoding": "identity"}
                    )
                    assert response.status_code == 200, response.text
                    sent.append(len(response.content))
                _report(label, url, sent, before, _sizes(url, args.database, Path(tmp)))


def _sizes(url: str, kind: str, directory: Path) -> dict[str, int]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if kind == "postgres":
                connection.execute(text("VACUUM ANALYZE"))
                return {
                    t: int(connection.scalar(text(f"SELECT pg_total_relation_size('{t}')")) or 0)
                    for t in _TABLES
                }
            files = list(directory.glob("*.db*"))
            return {"file": sum(f.stat().st_size for f in files)}
    finally:
        engine.dispose()


def _report(
    label: str, url: str, sent: list[int], before: dict[str, int], after: dict[str, int]
) -> None:
    engine = create_engine(url)
    n = len(sent)
    try:
        with engine.connect() as connection:
            rows = list(connection.execute(select(Evaluation.__table__)).mappings())[-n:]
            decisions = connection.scalar(select(func.count()).select_from(EvaluationDecision))
    finally:
        engine.dispose()
    result = [len(str(r["result"]).encode()) for r in rows]
    whole = [sum(len(str(v).encode()) for v in r.values() if v is not None) for r in rows]
    disk = sum(after.values()) - sum(before.values())
    answer = statistics.mean(sent)
    print(f"  {label}: answer sent {answer / 1000:8.1f} kB (mean)")
    print(f"    result column {statistics.mean(result) / 1000:8.2f} kB")
    print(f"    row as text   {statistics.mean(whole) / 1000:8.2f} kB (inputs, result, ids)")
    print(f"    on disk       {disk / n / 1000:8.2f} kB per evaluation (tables and indexes)")
    print(f"    stored / sent {disk / n / answer:8.3f}   ({decisions} decision rows in all)")
    if "ruleset_versions" in after:
        print(f"    rule set versions, stored once: {after['ruleset_versions'] / 1000:.0f} kB")


if __name__ == "__main__":
    main()
