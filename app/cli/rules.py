"""`eligo rules ...`: the rule authoring toolchain (validate, test, coverage, diff, schema,
features).

Every command exits 1 when the rules or their vignettes are wrong, so CI can run them as is.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from app.cli.common import EXIT_INPUT, EXIT_RULES, fail, load, settings
from app.engine.diagnostics import RuleLoadError

# The engine, pydantic and the cohort readers are imported inside the commands that use them,
# so `eligo --help` does not load them (app/cli/common.py).
if TYPE_CHECKING:
    from app.engine.diagnostics import Diagnostic
    from app.engine.diff import Change, StatusChange
    from app.engine.evaluate import Status
    from app.engine.inputs import FeatureValue
    from app.engine.model import Feature, RuleBase
    from app.engine.vignettes import CriterionCoverage, Outcome, Vignette

_DIR = click.argument("rules_dir", required=False, type=click.Path(path_type=Path))


@click.group()
def rules() -> None:
    """Rule authoring tools."""


def _report(diagnostics: Sequence[Diagnostic]) -> NoReturn:
    click.echo(RuleLoadError(list(diagnostics)).report(), err=True)
    sys.exit(EXIT_RULES)


def _vignettes(rules_dir: Path, base: RuleBase) -> list[Vignette]:
    """The vignettes of rules_dir/tests; exits 1 on any diagnostic."""
    from app.engine.vignettes import load_vignettes  # noqa: PLC0415

    vignettes, diagnostics = load_vignettes(rules_dir / "tests", base)
    if diagnostics:
        _report(diagnostics)
    return vignettes


@rules.command("validate")
@_DIR
def validate(rules_dir: Path | None) -> None:
    """Validate rule files and vignettes; print every diagnostic as file:line:col."""
    from app.engine.load import check_rules  # noqa: PLC0415

    directory = rules_dir or settings().rules_dir
    base, diagnostics = check_rules(directory)
    if base is None:
        _report(diagnostics)
    vignettes = _vignettes(directory, base)
    click.echo(
        f"{directory}: {len(base.rulesets)} rule sets, {len(base.features)} features, "
        f"{len(base.evidence)} citations, {len(vignettes)} vignettes: OK ({base.hash})"
    )


@rules.command("test")
@_DIR
@click.option("--ruleset", "ruleset_ids", multiple=True, help="Only this rule set (repeatable)")
@click.option("-v", "--verbose", is_flag=True, help="List passing vignettes too")
def test(rules_dir: Path | None, ruleset_ids: tuple[str, ...], verbose: bool) -> None:
    """Run the clinical vignettes in RULES_DIR/tests; exit 1 on any failure."""
    from app.engine.vignettes import run  # noqa: PLC0415

    directory = rules_dir or settings().rules_dir
    base = load(directory)
    unknown = sorted(set(ruleset_ids) - set(base.rulesets))
    if unknown:
        fail(f"unknown rule set(s): {', '.join(unknown)}")
    vignettes = [
        v for v in _vignettes(directory, base) if not ruleset_ids or v.ruleset.id in ruleset_ids
    ]
    if not vignettes:
        fail(f"{directory / 'tests'}: no vignettes to run", EXIT_RULES)
    outcomes = [run(v) for v in vignettes]
    for outcome in outcomes:
        if not outcome.passed:
            click.echo(_failure(outcome))
        elif verbose:
            click.echo(f"ok    {outcome.vignette.label}")
    failed = sum(not o.passed for o in outcomes)
    rulesets = len({o.vignette.ruleset.id for o in outcomes})
    click.echo(
        f"{len(outcomes)} vignettes over {rulesets} rule sets: "
        f"{len(outcomes) - failed} passed, {failed} failed"
    )
    floor_failed = _floor(vignettes, base, verbose)
    if failed or floor_failed:
        sys.exit(EXIT_RULES)


def _floor(vignettes: list[Vignette], base: RuleBase, verbose: bool) -> int:
    """The generated safety-floor cases: each eligible vignette with each general
    contraindication of its therapy switched on must be ineligible. Returns the failures."""
    from app.engine.report import render_table  # noqa: PLC0415
    from app.engine.vignettes import floor_cases  # noqa: PLC0415

    cases = floor_cases(vignettes, base)
    for case in cases:
        if not case.passed:
            lines = [
                f"FAIL  {case.label}",
                f"      status: expected ineligible, got {case.decision.status.value}",
                "      trace:",
            ]
            click.echo("\n".join(lines) + "\n" + render_table([case.decision], indent="        "))
        elif verbose:
            click.echo(f"ok    {case.label}")
    failed = sum(not c.passed for c in cases)
    eligible = len({id(c.vignette) for c in cases})
    click.echo(
        f"{len(cases)} safety-floor cases ({eligible} eligible vignettes, each general "
        f"contraindication of their therapy switched on): {len(cases) - failed} ineligible, "
        f"{failed} not"
    )
    return failed


def _failure(outcome: Outcome) -> str:
    from app.engine.report import render_table  # noqa: PLC0415

    lines = [f"FAIL  {outcome.vignette.label}"]
    lines += [f"      {m}" for m in outcome.mismatches]
    lines.append("      trace:")
    return "\n".join(lines) + "\n" + render_table([outcome.decision], indent="        ")


@rules.command("coverage")
@_DIR
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 100),
    default=None,
    help="Exit 1 if three-valued coverage is below this percentage",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report")
def coverage_command(rules_dir: Path | None, fail_under: float | None, as_json: bool) -> None:
    """Which criteria the vignettes drove to met, not_met and unknown; what never was."""
    from app.engine.vignettes import coverage, run  # noqa: PLC0415

    directory = rules_dir or settings().rules_dir
    base = load(directory)
    outcomes = [run(v) for v in _vignettes(directory, base)]
    report = coverage(base, outcomes)
    percent = coverage_percent(report)
    if as_json:
        click.echo(json.dumps(_coverage_json(report, percent), indent=2))
    else:
        click.echo(_coverage_text(report, percent, failed=sum(not o.passed for o in outcomes)))
    if fail_under is not None and percent < fail_under:
        click.echo(f"coverage {percent:.1f} % is below {fail_under:g} %", err=True)
        sys.exit(EXIT_RULES)


def coverage_percent(report: list[CriterionCoverage]) -> float:
    """Share of (criterion, result) pairs exercised, result in met / not_met / unknown."""
    total = 3 * len(report)
    return 100.0 * sum(len(c.seen) for c in report) / total if total else 100.0


def _coverage_text(report: list[CriterionCoverage], percent: float, failed: int) -> str:
    from app.engine.evaluate import Result  # noqa: PLC0415

    lines: list[str] = []
    current = ""
    for item in report:
        if item.ruleset.id != current:
            current = item.ruleset.id
            lines.append(f"{current}")
        marks = "  ".join(f"{r.value}:{'yes' if r in item.seen else 'NO '}" for r in Result)
        lines.append(f"  {item.criterion.kind.value:<10} {item.criterion.id:<44} {marks}")
    gaps = [c for c in report if c.unexercised]
    lines.append("")
    if gaps:
        lines.append("never exercised:")
        lines += [
            f"  {c.ruleset.id} {c.criterion.id}: {', '.join(r.value for r in c.unexercised)}"
            for c in gaps
        ]
    if failed:
        lines.append(f"({failed} failing vignettes were not counted)")
    full = sum(not c.unexercised for c in report)
    lines.append(
        f"three-valued coverage: {percent:.1f} % "
        f"({full}/{len(report)} criteria reached met, not_met and unknown)"
    )
    return "\n".join(lines)


def _coverage_json(report: list[CriterionCoverage], percent: float) -> dict[str, object]:
    return {
        "percent": round(percent, 2),
        "criteria": [
            {
                "ruleset": c.ruleset.id,
                "criterion": c.criterion.id,
                "kind": c.criterion.kind.value,
                "seen": sorted(r.value for r in c.seen),
                "never": [r.value for r in c.unexercised],
            }
            for c in report
        ],
    }


@rules.command("diff")
@click.argument("old_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("new_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--cohort",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A .csv or .jsonl cohort: also list the patients whose status changes",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report")
def diff(old_dir: Path, new_dir: Path, cohort: Path | None, as_json: bool) -> None:
    """What changed from OLD_DIR to NEW_DIR: criteria, thresholds, citations, risks."""
    from app.engine.diff import diff_rules  # noqa: PLC0415

    old, new = load(old_dir), load(new_dir)
    changes = diff_rules(old, new)
    moved = _cohort_changes(cohort, old, new) if cohort else None
    if as_json:
        report: dict[str, object] = {
            "old": old.hash,
            "new": new.hash,
            "changes": [c.as_dict() for c in changes],
        }
        if moved is not None:
            report["cohort"] = {"patients": moved[0], "changes": [_moved(m) for m in moved[1]]}
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(_diff_text(old_dir, new_dir, changes))
    if moved is not None and cohort is not None:
        click.echo(_cohort_text(cohort, *moved))


def _diff_text(old_dir: Path, new_dir: Path, changes: list[Change]) -> str:
    lines = [f"--- {old_dir}", f"+++ {new_dir}"]
    current: object = object()
    for change in changes:
        if change.ruleset != current:
            current = change.ruleset
            lines.append(change.ruleset or "catalogue (features.yaml, evidence.yaml)")
        lines.append(f"  {change}")
    lines.append(f"{len(changes)} change{'s' if len(changes) != 1 else ''}")
    return "\n".join(lines)


def _cohort_changes(path: Path, old: RuleBase, new: RuleBase) -> tuple[int, list[StatusChange]]:
    """Patients of the cohort whose status moves; exits 2 listing every bad row."""
    from app.batch.cohort import CohortError, read_cohort  # noqa: PLC0415
    from app.engine.diff import cohort_changes  # noqa: PLC0415
    from app.engine.inputs import InvalidInput  # noqa: PLC0415

    try:
        patients = read_cohort(path, {**old.features, **new.features})
    except CohortError as exc:
        fail(str(exc))
    rows, problems = [], []
    old_side, new_side = _normaliser(old.features), _normaliser(new.features)
    for patient in patients:
        try:
            rows.append((patient.ident, old_side(patient.features), new_side(patient.features)))
        except InvalidInput as exc:
            problems += [f"{patient.where}: {i.field}: {i.message}" for i in exc.issues]
    if problems:
        click.echo("\n".join(dict.fromkeys(problems)), err=True)
        sys.exit(EXIT_INPUT)
    return len(rows), cohort_changes(old, new, rows)


def _normaliser(
    features: Mapping[str, Feature],
) -> Callable[[dict[str, Any]], dict[str, FeatureValue]]:
    """A row's values as one side's catalogue reads them. A column that catalogue lacks is
    unknown on that side (the feature was added or removed): that is part of what the diff
    shows, not an input error."""
    from app.engine.derive import derive  # noqa: PLC0415
    from app.engine.inputs import normalise  # noqa: PLC0415

    def side(raw: dict[str, Any]) -> dict[str, FeatureValue]:
        known = {k: v for k, v in raw.items() if k in features}
        return derive(normalise(known, features), features)

    return side


def _moved(change: StatusChange) -> dict[str, object]:
    return {
        "patient": change.patient,
        "ruleset": change.ruleset,
        "old": change.old.value if change.old else None,
        "new": change.new.value if change.new else None,
        "reasons": list(change.reasons),
    }


def _cohort_text(path: Path, patients: int, moved: list[StatusChange]) -> str:
    lines = [f"cohort {path}: {patients} patients, {len(moved)} status changes"]
    by_ruleset: dict[str, Counter[str]] = {}
    for m in moved:
        move = f"{_status(m.old)} -> {_status(m.new)}"
        by_ruleset.setdefault(m.ruleset, Counter())[move] += 1
    for ruleset, counts in sorted(by_ruleset.items()):
        summary = ", ".join(f"{move}: {n}" for move, n in counts.most_common())
        lines.append(f"  {ruleset}: {sum(counts.values())} patients ({summary})")
    for m in moved:
        reasons = f" [{', '.join(m.reasons)}]" if m.reasons else ""
        lines.append(f"  {m.patient}  {m.ruleset}  {_status(m.old)} -> {_status(m.new)}{reasons}")
    return "\n".join(lines)


def _status(status: Status | None) -> str:
    return status.value if status else "(no such rule set)"


@rules.command("schema")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to a file instead of stdout",
)
@click.option(
    "--fragment",
    is_flag=True,
    help="The schema of shared fragments (rules/fragments/*.yaml) instead of rule sets",
)
def schema(out: Path | None, fragment: bool) -> None:
    """Print the JSON Schema of rule set files (generated from the models)."""
    from app.engine.schema import ruleset_json_schema  # noqa: PLC0415

    text = json.dumps(ruleset_json_schema("fragment" if fragment else "ruleset"), indent=2)
    text += "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@rules.command("features")
@_DIR
@click.option("--markdown", is_flag=True, help="The reference document instead of JSON")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to a file instead of stdout (docs/FEATURES.md is made this way)",
)
def features(rules_dir: Path | None, markdown: bool, out: Path | None) -> None:
    """Print the feature catalogue: as GET /v1/features answers it, or as Markdown."""
    from app.engine import present  # noqa: PLC0415
    from app.engine.features_doc import render_markdown  # noqa: PLC0415

    base = load(rules_dir or settings().rules_dir)
    if markdown:
        text = render_markdown(base.features)
    else:
        listed = {"features": [present.feature(f) for f in base.features.values()]}
        text = json.dumps(listed, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
