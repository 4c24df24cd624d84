"""The `eligo` command line.

Exit codes: 0 success; 1 invalid rules (diagnostics printed); 2 bad usage or bad input file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app import strict_json
from app.cli import common
from app.cli.clients import clients as clients_group
from app.cli.common import EXIT_CONFIG, EXIT_INPUT, EXIT_RULES, fail, load
from app.cli.db import db as db_group
from app.cli.mapping import mapping as mapping_group
from app.cli.rules import rules as rules_group
from app.cli.screen import screen_command
from app.cli.synth import synth as synth_command
from app.cli.users import users as users_group
from app.engine.diagnostics import RuleLoadError
from app.errors import StartupRefused

# What only some commands need (the engine, pydantic, SQLAlchemy, the server) is imported inside
# them, so `eligo --version` and `--help` start fast (app/cli/common.py).
if TYPE_CHECKING:
    from app.settings import Settings


@click.group()
@click.version_option(package_name="eligo")
def main() -> None:
    """Eligo: therapy-eligibility decision support (HSCT, MSC, CAR-T in SSc and SLE)."""


@main.command()
@click.option("--host", default=None, help="Bind address [default: ELIGO_HOST or 127.0.0.1]")
@click.option(
    "--port", default=None, type=click.IntRange(1, 65535), help="Port [default: ELIGO_PORT or 8000]"
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="Worker processes [default: ELIGO_WORKERS, else 1 in development and one per CPU "
    "(at most 4) in production]",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP service (refuses to start on invalid rules)."""
    from app import serving  # noqa: PLC0415 - only the server needs it (and uvicorn)
    from app.main import create_app, release  # noqa: PLC0415

    settings = common.settings()
    host = host or settings.host
    workers = workers or serving.worker_count(settings)
    serving.configure_logging(settings, workers)
    # Bound before the app is built: a busy port is said at once, in one line, and the
    # database is not migrated for a server that could not have served.
    try:
        bound = serving.bind(host, port or settings.port)
    except serving.CannotBind as exc:
        fail(str(exc), EXIT_CONFIG)
    try:
        # With several workers this app is a check only: each worker builds its own.
        app = create_app(settings, host)
    except RuleLoadError as exc:
        click.echo(exc.report(), err=True)
        fail("refusing to start: the rules are invalid", EXIT_RULES)
    except StartupRefused as exc:
        fail("refusing to start: " + "; ".join(exc.reasons), EXIT_CONFIG)
    click.echo(_announcement(settings), err=True)
    if workers > 1:
        release(app)
        del app  # the supervisor only checked it: not kept in memory while the workers serve
        serving.serve_workers(settings, host, bound, workers)
        return
    serving.serve(app, settings, bound)


def _announcement(settings: Settings) -> str:
    parts = [f"Eligo {settings.env.value} mode."]
    if not settings.auth:
        parts.append(
            "DEVELOPMENT MODE: authentication is OFF; local use on a loopback address only."
        )
    if settings.pseudonym_key is None:
        parts.append("Patient pseudonyms use the published development key.")
    parts.append("Rule sets are drafts that need local clinical review.")
    return " ".join(parts)


# The request body of POST /v1/evaluations, key by key: what each must be (the CLI does not
# load the API's pydantic models, to start fast).
_BODY_KEYS = {
    "features": (dict, "an object of feature values"),
    "rulesets": (list, "a list of rule set ids"),
    "patient_id": (str, "text"),
    "fhir": (dict, "a FHIR R4 Bundle"),
}


def _read_patient(path: Path) -> dict[str, Any]:
    """The file as POST /v1/evaluations takes its body; exits 2 naming what is wrong."""
    data: Any = None
    try:
        settings = common.settings()
        limits = strict_json.Limits(settings.max_json_depth, settings.max_json_items)
        data = strict_json.loads_checked(path.read_bytes(), limits)
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror}")
    except json.JSONDecodeError as exc:
        fail(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}")
    except strict_json.Refused as exc:
        fail("\n".join(f"{path}: {strict_json.located(issue)}" for issue in exc.issues))
    except (UnicodeDecodeError, ValueError) as exc:
        fail(f"{path}: {exc}")
    if not isinstance(data, dict) or not (
        isinstance(data.get("features"), dict) or isinstance(data.get("fhir"), dict)
    ):
        fail(
            f'{path}: expected a JSON object with a "features" object (or a "fhir" Bundle), '
            "as POST /v1/evaluations takes"
        )
    extra = set(data) - set(_BODY_KEYS)
    if extra:
        fail(f"{path}: unexpected key(s) {sorted(extra)}; a request has {sorted(_BODY_KEYS)}")
    for key, (kind, what) in _BODY_KEYS.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            fail(f"{path}: {key}: expected {what}")
    if isinstance(data.get("rulesets"), list) and not all(
        isinstance(i, str) for i in data["rulesets"]
    ):
        fail(f"{path}: rulesets: expected a list of rule set ids")
    patient: dict[str, Any] = data
    return patient


@main.command()
@click.argument("patient", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer instead of a table")
@click.option("--ruleset", "ruleset_ids", multiple=True, help="Rule set id (repeatable)")
@click.option(
    "--view",
    type=click.Choice(["full", "summary"]),
    default="full",
    help="With --json: the full trace, or verdicts only (as ?view= of the API)",
)
@click.option(
    "--indications",
    type=click.Choice(["all", "present"]),
    default="all",
    help="present: leave out the protocols of a disease not recorded (as ?indications=)",
)
@click.option(
    "--rules-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Rules directory [default: ELIGO_RULES_DIR or the shipped rules]",
)
def evaluate(
    patient: Path,
    *,
    as_json: bool,
    ruleset_ids: tuple[str, ...],
    view: str,
    indications: str,
    rules_dir: Path | None,
) -> None:
    """Evaluate PATIENT.json, a body as POST /v1/evaluations takes it ({"features": {...}},
    optionally "rulesets", "fhir", "patient_id"), against the rule sets. The answer is the
    API's, decided by the same service; nothing is recorded and the patient id is not used."""
    # See the comment on the imports.
    from app.engine.inputs import InvalidInput  # noqa: PLC0415
    from app.engine.report import render_table  # noqa: PLC0415
    from app.services import evaluations as service  # noqa: PLC0415

    rules = load(rules_dir or common.settings().rules_dir)
    data = _read_patient(patient)
    asked = service.PatientInput(
        features=data.get("features") or {}, fhir=data.get("fhir"), patient_id=None
    )
    options = service.Options(
        rulesets=list(ruleset_ids) or data.get("rulesets"),
        view=view,  # type: ignore[arg-type]  # click.Choice: one of View's
        indications=indications,  # type: ignore[arg-type]  # likewise
    )
    try:
        decided = service.decide(rules, asked, options, service.Stamp.new())
    except InvalidInput as exc:
        for issue in exc.issues:
            click.echo(f"{patient}: {issue.field}: {issue.message}", err=True)
        sys.exit(EXIT_INPUT)
    if as_json:
        click.echo(decided.body.decode())
        return
    for item in decided.answer.get("corrections", []):
        click.echo(f"{patient}: corrected {item['feature']}: {item['because']}", err=True)
    apart = {d.ruleset.id: r["message"] for d, r in decided.answered if r is not None}
    click.echo(render_table([d for d, _ in decided.answered], not_assessed=apart))


main.add_command(rules_group)
main.add_command(db_group)
main.add_command(mapping_group)
main.add_command(clients_group)
main.add_command(users_group)
main.add_command(screen_command)
main.add_command(synth_command)

if __name__ == "__main__":
    main()
