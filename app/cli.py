"""The `eligo` command line.

Exit codes: 0 success; 1 invalid rules (diagnostics printed); 2 bad usage or bad input file.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from app import strict_json
from app.engine import present
from app.engine.diagnostics import RuleLoadError
from app.engine.evaluate import AtomTrace, Decision, Result, Status
from app.engine.inputs import InvalidInput, normalise
from app.engine.load import check_rules, load_rules
from app.engine.model import RuleBase
from app.engine.run import evaluate_all, select
from app.engine.schema import ruleset_json_schema
from app.settings import Environment, Settings

EXIT_RULES = 1
EXIT_INPUT = 2


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _load(rules_dir: Path) -> RuleBase:
    try:
        return load_rules(rules_dir)
    except RuleLoadError as exc:
        click.echo(exc.report(), err=True)
        sys.exit(EXIT_RULES)


@click.group()
@click.version_option(package_name="eligo")
def main() -> None:
    """Eligo: therapy-eligibility decision support (HSCT, MSC, CAR-T in SSc and SLE)."""


@main.command()
@click.option("--host", default=None, help="Bind address [default: ELIGO_HOST or 127.0.0.1]")
@click.option(
    "--port", default=None, type=click.IntRange(1, 65535), help="Port [default: ELIGO_PORT or 8000]"
)
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP service (refuses to start on invalid rules)."""
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from app.main import create_app  # noqa: PLC0415

    settings = Settings()
    # Request bodies are never logged: they carry patient data.
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(settings)
    except RuleLoadError as exc:
        click.echo(exc.report(), err=True)
        click.echo("refusing to start: the rules are invalid", err=True)
        sys.exit(EXIT_RULES)
    if settings.env is Environment.DEVELOPMENT:
        click.echo(
            "Eligo is running in DEVELOPMENT mode: local use only, no authentication. "
            "Rule sets are drafts that need local clinical review.",
            err=True,
        )
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
    )


def _read_patient(path: Path) -> dict[str, Any]:
    data: Any = None
    try:
        data = strict_json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc.strerror}")
    except json.JSONDecodeError as exc:
        _fail(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}")
    except (UnicodeDecodeError, ValueError) as exc:
        _fail(f"{path}: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("features"), dict):
        _fail(
            f'{path}: expected a JSON object with a "features" object, '
            "as POST /v1/evaluations takes"
        )
    extra = set(data) - {"features", "rulesets"}
    if extra:
        _fail(f"{path}: unexpected key(s) {sorted(extra)}")
    patient: dict[str, Any] = data
    return patient


@main.command()
@click.argument("patient", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table")
@click.option("--ruleset", "ruleset_ids", multiple=True, help="Rule set id (repeatable)")
@click.option(
    "--rules-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Rules directory [default: ELIGO_RULES_DIR or the shipped rules]",
)
def evaluate(
    patient: Path, as_json: bool, ruleset_ids: tuple[str, ...], rules_dir: Path | None
) -> None:
    """Evaluate PATIENT.json ({"features": {...}}) against the rule sets."""
    rules = _load(rules_dir or Settings().rules_dir)
    data = _read_patient(patient)
    ids = list(ruleset_ids) or data.get("rulesets")
    try:
        values = normalise(data["features"], rules.features)
        decisions = evaluate_all(select(rules, ids), values)
    except InvalidInput as exc:
        for issue in exc.issues:
            click.echo(f"{patient}: {issue.field}: {issue.message}", err=True)
        sys.exit(EXIT_INPUT)
    if as_json:
        results = [present.decision(d, rules) for d in decisions]
        click.echo(json.dumps({"rules_hash": rules.hash, "results": results}, indent=2))
    else:
        click.echo(render_table(decisions))


_MARK = {Result.MET: "met", Result.NOT_MET: "not met", Result.UNKNOWN: "unknown"}


def render_table(decisions: list[Decision]) -> str:
    """A plain-text report: one block per rule set, one row per criterion."""
    lines: list[str] = []
    for decision in decisions:
        ruleset = decision.ruleset
        lines.append(
            f"{ruleset.id} {ruleset.version} ({ruleset.review_status.value}): "
            f"{decision.status.value.upper().replace('_', ' ')}"
        )
        if decision.status is Status.INDETERMINATE:
            lines.append(f"  missing: {', '.join(decision.missing)}")
        rows = [
            (r.criterion.kind.value, r.criterion.id, _MARK[r.result], _values(r.trace))
            for r in (*decision.criteria, *decision.cautions)
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines += [
            "  "
            + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
            for row in rows
        ]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _values(trace: tuple[AtomTrace, ...]) -> str:
    return ", ".join(_shown(atom) for atom in trace)


def _shown(atom: AtomTrace) -> str:
    given = atom.value
    if given is None:
        return f"{atom.atom.feature}=?"
    text = f"{atom.atom.feature}={_scalar(given.value)}"
    if given.unit:
        text += f" {given.unit}"
    if given.given_unit and given.given_unit != given.unit:
        text += f" (given {_scalar(given.given_value)} {given.given_unit})"
    return text


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, int | float) else str(value)


@main.group()
def rules() -> None:
    """Rule authoring tools."""


@rules.command("validate")
@click.argument("rules_dir", required=False, type=click.Path(path_type=Path))
def validate(rules_dir: Path | None) -> None:
    """Validate a rules directory; print every diagnostic as file:line:col."""
    directory = rules_dir or Settings().rules_dir
    base, diagnostics = check_rules(directory)
    if base is None:
        click.echo(RuleLoadError(diagnostics).report(), err=True)
        sys.exit(EXIT_RULES)
    click.echo(
        f"{directory}: {len(base.rulesets)} rule sets, {len(base.features)} features, "
        f"{len(base.evidence)} citations: OK ({base.hash})"
    )


@rules.command("schema")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to a file instead of stdout",
)
def schema(out: Path | None) -> None:
    """Print the JSON Schema of rule set files (generated from the models)."""
    text = json.dumps(ruleset_json_schema(), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
