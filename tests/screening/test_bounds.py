"""Bounds and overlap in a screening's report, held to the per-patient API.

A synthetic registry (`eligo synth`, fixed seed) is screened; then every patient is decided
again through the API's own path (`services.evaluations.decide`: `normalise`, `derive`,
`decide`, the answer as sent) and, from those answers alone, the bounds (eligible, best case,
what the undecided await, the items that alone keep them undecided) and the overlap between
the rule sets of one therapy for one indication are counted again: they must equal the
report's. Counting the results again in small batches gives the same report (the tally adds
batch by batch).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from app.batch.report import MOST_IN_OVERLAP, TOP_MISSING, Tally
from app.batch.runner import Outcome, Request, screen
from app.cli import synth as synth_cli
from app.cli.screen import screen_command
from app.engine.inputs import FeatureValue
from app.engine.model import Feature, RuleBase
from app.services.evaluations import Options, PatientInput, Stamp
from app.services.evaluations import decide as api_decide
from tests.conftest import SHIPPED_RULES

pytestmark = pytest.mark.one_pass

PATIENTS = 800
SEED = 3

Answers = list[dict[str, tuple[str, frozenset[str], frozenset[str]]]]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bounds") / "cohort.parquet"
    args = ["--n", str(PATIENTS), "--seed", str(SEED), "--out", str(path)]
    result = CliRunner().invoke(synth_cli.synth, [*args, "--rules-dir", str(SHIPPED_RULES)])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def outcome(cohort: Path, shipped_rules: RuleBase) -> Outcome:
    return screen(Request(source=str(cohort), out=cohort.with_name("r.parquet")), shipped_rules)


@pytest.fixture(scope="module")
def answers(cohort: Path, shipped_rules: RuleBase) -> Answers:
    """Per patient and rule set, the API's answer: status, values to measure, confirmations."""
    found: Answers = []
    for row in pq.read_table(cohort).to_pylist():
        given = {k: v for k, v in row.items() if k != "id" and v is not None}
        decided = api_decide(
            shipped_rules, PatientInput(features=given), Options(view="summary"), Stamp.new()
        )
        found.append(
            {
                r["ruleset"]["id"]: (
                    r["status"],
                    frozenset(m["feature"] for m in r["missing"]),
                    frozenset(c["feature"] for c in r["to_confirm"]),
                )
                for r in decided.content["results"]
            }
        )
    return found


def expected_bounds(answers: Answers, ruleset: str, rules: RuleBase) -> dict[str, Any]:
    statuses = Counter(a[ruleset][0] for a in answers)
    undecided = [a[ruleset] for a in answers if a[ruleset][0] == "indeterminate"]
    only: Counter[tuple[str, str]] = Counter()
    for _, missing, to_confirm in undecided:
        items = [(f, "missing") for f in missing] + [(f, "to_confirm") for f in to_confirm]
        if len(items) == 1:
            only[items[0]] += 1
    ranked = sorted(only.items(), key=lambda item: (-item[1], item[0][0]))[:TOP_MISSING]
    return {
        "eligible": statuses["eligible"],
        "best_case": statuses["eligible"] + statuses["indeterminate"],
        "data_gaps_only": sum(1 for _, m, c in undecided if m and not c),
        "confirmations_only": sum(1 for _, m, c in undecided if c and not m),
        "gaps_and_confirmations": sum(1 for _, m, c in undecided if m and c),
        "unlock": [
            {
                "feature": feature,
                "label": rules.features[feature].spec.label,
                "kind": kind,
                "patients": n,
            }
            for (feature, kind), n in ranked
        ],
    }


def expected_overlap(answers: Answers, rules: RuleBase) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for ruleset in rules.rulesets.values():
        groups[(ruleset.therapy.value, ruleset.indication.value)].append(ruleset.id)
    found = []
    for (therapy, indication), ids in groups.items():
        if len(ids) < 2:
            continue
        regions = {}
        for kind, hopeful in (
            ("eligible", {"eligible"}),
            ("best_case", {"eligible", "indeterminate"}),
        ):
            counted = Counter(tuple(i for i in ids if a[i][0] in hopeful) for a in answers)
            regions[kind] = {region: n for region, n in counted.items() if region}
        found.append({"therapy": therapy, "indication": indication, "rulesets": ids, **regions})
    return found


def as_regions(listed: list[dict[str, Any]]) -> dict[tuple[str, ...], int]:
    return {tuple(r["rulesets"]): r["patients"] for r in listed}


def test_bounds_are_those_the_per_patient_api_gives(
    outcome: Outcome, answers: Answers, shipped_rules: RuleBase
) -> None:
    assert outcome.report["screened"] == PATIENTS  # no synthetic patient is rejected
    for entry in outcome.report["rulesets"]:
        expected = expected_bounds(answers, entry["id"], shipped_rules)
        assert entry["bounds"] == expected, entry["id"]
        bounds = entry["bounds"]
        # every undecided patient awaits something, and is counted once
        split = ("data_gaps_only", "confirmations_only", "gaps_and_confirmations")
        assert sum(bounds[k] for k in split) == entry["counts"]["indeterminate"], entry["id"]
    # not vacuous: some of each, somewhere
    every = [e["bounds"] for e in outcome.report["rulesets"]]
    for key in ("eligible", "data_gaps_only", "confirmations_only", "gaps_and_confirmations"):
        assert any(b[key] for b in every), key
    kinds = {u["kind"] for b in every for u in b["unlock"]}
    assert kinds == {"missing", "to_confirm"}


def test_the_one_item_unlocking_a_patient_decides_them(
    cohort: Path, answers: Answers, shipped_rules: RuleBase
) -> None:
    """What `unlock` promises: a patient whose only unknown item it is is decided (eligible or
    not) once it is given, whichever value it takes."""
    rows = pq.read_table(cohort).to_pylist()
    tried = 0
    for row, answer in zip(rows, answers, strict=True):
        for ident, (status, missing, to_confirm) in answer.items():
            if status != "indeterminate" or len(missing | to_confirm) != 1:
                continue
            (feature,) = missing | to_confirm
            for value in _values(shipped_rules.features[feature]):
                given = {k: v for k, v in row.items() if k != "id" and v is not None}
                decided = api_decide(
                    shipped_rules,
                    PatientInput(features={**given, feature: value}),
                    Options(rulesets=[ident], view="summary"),
                    Stamp.new(),
                )
                assert decided.content["results"][0]["status"] != "indeterminate", (ident, feature)
                tried += 1
    assert tried > 10


def _values(feature: Feature) -> list[FeatureValue | Any]:
    """A few values of the feature's type, within its range."""
    spec = feature.spec
    if spec.values:
        return list(spec.values)
    if spec.range is not None:
        low, high = spec.range
        return [low, high] if spec.integer else [low, (low + high) / 2, high]
    return [True, False]


def test_overlap_is_that_of_the_per_patient_api(
    outcome: Outcome, answers: Answers, shipped_rules: RuleBase
) -> None:
    expected = expected_overlap(answers, shipped_rules)
    found = outcome.report["overlap"]
    assert [(g["therapy"], g["indication"], g["rulesets"]) for g in found] == [
        (g["therapy"], g["indication"], g["rulesets"]) for g in expected
    ]
    assert {("hsct", "ssc"), ("msc", "sle")} <= {(g["therapy"], g["indication"]) for g in found}
    for group, wanted in zip(found, expected, strict=True):
        for kind in ("eligible", "best_case"):
            assert as_regions(group[kind]) == wanted[kind], (group["therapy"], kind)
            counts = [r["patients"] for r in group[kind]]
            assert counts == sorted(counts, reverse=True)  # most first
    # not vacuous: patients eligible under two rule sets of a group, and more at best
    hsct = next(g for g in found if g["therapy"] == "hsct")
    assert any(len(r["rulesets"]) >= 2 for r in hsct["eligible"])
    assert len(hsct["best_case"]) > len(hsct["eligible"])


def test_counting_in_small_batches_gives_the_same_report(
    outcome: Outcome, shipped_rules: RuleBase
) -> None:
    rulesets = list(shipped_rules.rulesets.values())
    tally = Tally(rulesets, [f.id for f in shipped_rules.features.values() if f.derivations])
    for batch in pq.read_table(outcome.results).to_batches(max_chunksize=97):
        tally.add(batch)
    counted = tally.reports(shipped_rules.features)
    assert counted.rulesets == outcome.report["rulesets"]
    assert counted.overlap == outcome.report["overlap"]


def test_counting_chunked_columns_gives_the_same_report(
    outcome: Outcome, shipped_rules: RuleBase
) -> None:
    """A table of several chunks, whose columns are chunked arrays: the counts an array gives
    by its own bitmaps (`true_count`) and the exit steps counted by bincount come out as for
    the batches the runner streams."""
    rulesets = list(shipped_rules.rulesets.values())
    tally = Tally(rulesets, [f.id for f in shipped_rules.features.values() if f.derivations])
    table = pq.read_table(outcome.results)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=61))
    assert chunked.column(0).num_chunks > 1
    tally.add(chunked)
    counted = tally.reports(shipped_rules.features)
    assert counted.rulesets == outcome.report["rulesets"]
    assert counted.overlap == outcome.report["overlap"]


def test_eligo_screen_prints_the_bounds(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    args = [str(cohort), "--out", str(out), "--rules-dir", str(SHIPPED_RULES)]
    result = CliRunner().invoke(screen_command, args)
    assert result.exit_code == 0, result.output
    entries = json.loads(out.with_name("r.report.json").read_text())["rulesets"]
    for entry in entries:
        b = entry["bounds"]
        line = (
            f"  {entry['id']}: eligible {b['eligible']:,} (known); up to {b['best_case']:,} "
            f"if every unknown were favourable: {b['data_gaps_only']:,} only values to measure, "
            f"{b['confirmations_only']:,} only confirmations, {b['gaps_and_confirmations']:,} both"
        )
        assert line in result.stdout, line
        if b["unlock"]:
            first = b["unlock"][0]
            patients = f"{first['patients']:,} patient" + ("" if first["patients"] == 1 else "s")
            assert f"{line}; most unlocking: {first['feature']} ({patients})" in result.stdout


def test_a_group_too_large_for_its_bits_is_left_out_of_the_overlap(
    shipped_rules: RuleBase,
) -> None:
    astis = shipped_rules.rulesets["hsct-ssc-astis"]

    def overlap(copies: int) -> list[Any]:
        rulesets = [replace(astis, id=f"astis-{i}") for i in range(copies)]
        return Tally(rulesets).reports(shipped_rules.features).overlap

    assert [g["rulesets"] for g in overlap(MOST_IN_OVERLAP)] == [
        [f"astis-{i}" for i in range(MOST_IN_OVERLAP)]
    ]
    assert overlap(MOST_IN_OVERLAP + 1) == []
    assert overlap(1) == []
