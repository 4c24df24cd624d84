"""How much of a registry's true mapping `eligo mapping init` proposes, on `eligo synth`'s
registry codings (whose mapping file reads them exactly).

    .venv/bin/python -m benchmarks.starter_recall [--n 2000] [--seed 0]

Writes the synthetic registry and its true mapping, runs the starter on it, and prints: how
many of the true mapping's features the starter proposes, how many from the same column, and
how many of those read the same values. "The same values" is measured by the screening's own
validation (app/batch/validate.py on DuckDB): every row's validated features, read once with
the true mapping and once with the true mapping whose entries for those features are the
starter's (its resolved column: unit, codes, missing codes, decimal comma), so that a
derivation from another feature sees the same inputs in both. Not a timing: the figures are
counts, out of the true mapping's, measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from app.batch.backends import DuckDBBackend, text
from app.batch.head import Limits
from app.batch.mapping import Column, Plan, load_mapping, plan
from app.batch.starter import propose, read_columns, render
from app.batch.synth_registry import mapping, write_registry_csv
from app.engine.load import load_rules
from app.engine.model import Feature
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Agreement:
    truth: int  # features the true mapping reads
    proposed: frozenset[str]  # features the starter proposes
    same_column: frozenset[str]  # ... from the column the true mapping reads them from
    differ: Mapping[str, str]  # of those, the features whose values differ: an example row


def compare(source: Path, truth: Path, starter: Path, features: Mapping[str, Feature]) -> Agreement:
    backend = DuckDBBackend()
    try:
        relation, kinds = backend.open(str(source))
        true_plan = plan(kinds, features, load_mapping(truth, features))
        starter_plan = plan(kinds, features, load_mapping(starter, features))
        same = _same_column(true_plan, starter_plan)
        hybrid = _hybrid(true_plan, same)
        expected = _values(backend, relation.table(), true_plan, features)
        found = _values(backend, relation.table(), hybrid, features)
    finally:
        backend.close()
    differ = {f: _first_difference(expected, found, f) for f in features}
    return Agreement(
        len(true_plan.columns),
        frozenset(c.feature.id for c in starter_plan.columns),
        frozenset(same),
        {f: d for f, d in differ.items() if d},
    )


def _same_column(truth: Plan, starter: Plan) -> dict[str, Column]:
    columns = {c.feature.id: c.column for c in truth.columns}
    return {c.feature.id: c for c in starter.columns if columns.get(c.feature.id) == c.column}


def _hybrid(truth: Plan, same: Mapping[str, Column]) -> Plan:
    """The true plan with the starter's reading of the features both read from one column."""
    columns = tuple(same.get(c.feature.id, c) for c in truth.columns)
    return replace(truth, columns=columns)


def _values(
    backend: DuckDBBackend, raw: Any, columns: Plan, features: Mapping[str, Feature]
) -> dict[str, list[Any]]:
    from app.batch.validate import validated  # noqa: PLC0415 - SQLAlchemy

    query = validated(raw, columns, list(features.values()), backend.dialect, [])
    import sqlalchemy as sa  # noqa: PLC0415

    rows = backend.connection.sql(text(sa.select(query), backend.dialect)).to_arrow_table()
    return {f: rows[f].to_pylist() for f in features}


def _first_difference(
    expected: Mapping[str, list[Any]], found: Mapping[str, list[Any]], feature: str
) -> str:
    pairs = zip(expected[feature], found[feature], strict=True)
    for row, (want, got) in enumerate(pairs, start=2):
        if want != got:
            return f"line {row}: {want!r} read as {got!r}"
    return ""


def measure(
    n: int, seed: int, folder: Path, features: Mapping[str, Feature] | None = None
) -> Agreement:
    """Write the registry, its true mapping and the starter's into `folder`; compare them."""
    features = features or load_rules(Settings().rules_dir).features
    source, truth, starter = folder / "reg.csv", folder / "truth.yaml", folder / "starter.yaml"
    write_registry_csv(n, features, source, seed=seed)
    truth.write_text(mapping(features, source.name), encoding="utf-8")
    proposed = propose(read_columns(source, Limits()), features)
    starter.write_text(render(proposed, source.name, date.today()), encoding="utf-8")
    return compare(source, truth, starter, features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = measure(args.n, args.seed, Path(tmp))
    same = len(found.same_column)
    print(f"true mapping: {found.truth} features")
    print(f"proposed:     {len(found.proposed)} ({len(found.proposed) / found.truth:.0%})")
    print(f"same column:  {same} ({same / found.truth:.0%})")
    print(
        f"same values:  {same - len(found.differ)} ({(same - len(found.differ)) / found.truth:.0%})"
    )
    for feature, example in sorted(found.differ.items()):
        print(f"  differs: {feature}: {example}")


if __name__ == "__main__":
    main()
