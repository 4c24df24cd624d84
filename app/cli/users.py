"""`eligo users ...`: clinician accounts for the web form (ELIGO_DATABASE_URL).

Passwords are typed at a hidden prompt (asked twice) or, for scripts, read as one line from
standard input with --password-stdin; never as an argument, which other users of the machine
could read in the process list. Only an Argon2id hash is stored, and nothing prints it.
Clinicians are disabled, never deleted, so the audit trail can always name who asked.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from app.cli.common import database_session, fail

# The account services and their SQLAlchemy models are imported inside the commands
# (app/cli/common.py).
if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.db.models import Clinician

PASSWORD_STDIN = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password as one line from standard input instead of prompting",
)


@click.group()
def users() -> None:
    """Clinician accounts for the web form: add, list, disable, enable, password, unlock."""


def _password(from_stdin: bool) -> str:
    if not from_stdin:
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    line = sys.stdin.readline()
    if not line:
        fail("--password-stdin: standard input is empty")
    return line.removesuffix("\n").removesuffix("\r")


def _clinician(session: Session, username: str) -> Clinician:
    from app.services import accounts  # noqa: PLC0415

    clinician = accounts.find_clinician(session, username)
    if clinician is None:
        fail(f"no clinician {username!r}; see `eligo users list`")
    return clinician


@users.command("add")
@click.argument("username")
@click.option("--name", "display_name", required=True, help="The name shown to colleagues")
@PASSWORD_STDIN
def add(username: str, display_name: str, password_stdin: bool) -> None:
    """Add a clinician USERNAME (stored in lower case) with a password."""
    from app.services import accounts  # noqa: PLC0415

    password = _password(password_stdin)
    with database_session() as session:
        try:
            clinician = accounts.create_clinician(
                session, username, display_name, password, datetime.now(UTC)
            )
        except ValueError as exc:
            fail(str(exc))
    click.echo(f"created clinician {clinician.username}")


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


Paused = list[tuple[str, datetime]]


def _row(clinician: Clinician, paused: Paused) -> dict[str, object]:
    return {
        "id": clinician.id,
        "username": clinician.username,
        "display_name": clinician.display_name,
        "created_at": _time(clinician.created_at),
        "disabled_at": _time(clinician.disabled_at),
        "sign_in_paused": [{"source": source, "until": _time(until)} for source, until in paused],
        "last_sign_in_at": _time(clinician.last_sign_in_at),
        "password_changed_at": _time(clinician.password_changed_at),
    }


def _state(clinician: Clinician, paused: Paused) -> str:
    if clinician.disabled_at is not None:
        return f"disabled {clinician.disabled_at.isoformat()}"
    if paused:
        until = max(until for _, until in paused).isoformat()
        where = "1 address" if len(paused) == 1 else f"{len(paused)} addresses"
        return f"active; sign-in paused from {where} until {until}"
    return "active"


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
def list_users(as_json: bool) -> None:
    """List clinicians, disabled ones included (never their password hashes)."""
    from app.db import accounts as repository  # noqa: PLC0415
    from app.services import accounts  # noqa: PLC0415

    now = datetime.now(UTC)
    with database_session() as session:
        found = [
            (c, accounts.paused_from(session, c, now)) for c in repository.all_clinicians(session)
        ]
    if as_json:
        click.echo(json.dumps([_row(c, paused) for c, paused in found], indent=2))
        return
    for clinician, paused in found:
        click.echo(f"{clinician.username}  {clinician.display_name}  {_state(clinician, paused)}")


@users.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Refuse USERNAME's sign-ins and end their sessions at once."""
    from app.services import accounts  # noqa: PLC0415

    with database_session() as session:
        clinician = _clinician(session, username)
        if not accounts.disable(session, clinician, datetime.now(UTC)):
            fail(f"clinician {clinician.username} was already disabled")
    click.echo(f"disabled {clinician.username}; their sessions have ended")


@users.command("enable")
@click.argument("username")
def enable(username: str) -> None:
    """Allow a disabled USERNAME to sign in again."""
    from app.services import accounts  # noqa: PLC0415

    with database_session() as session:
        clinician = _clinician(session, username)
        if not accounts.enable(clinician):
            fail(f"clinician {clinician.username} is not disabled")
    click.echo(f"enabled {clinician.username}")


@users.command("password")
@click.argument("username")
@PASSWORD_STDIN
def change_password(username: str, password_stdin: bool) -> None:
    """Set USERNAME's password; their sessions end."""
    from app.services import accounts  # noqa: PLC0415
    from app.services.accounts import PasswordRejected  # noqa: PLC0415

    new_password = _password(password_stdin)
    with database_session() as session:
        clinician = _clinician(session, username)
        try:
            accounts.set_password(session, clinician, new_password, datetime.now(UTC))
        except PasswordRejected as exc:
            fail(str(exc))
    click.echo(f"changed the password of {clinician.username}; their sessions have ended")


@users.command("unlock")
@click.argument("username")
def unlock(username: str) -> None:
    """Lift the pauses on signing in as USERNAME after failed sign-ins, from every address
    (and those addresses' pauses for every name), and forget the failures counted."""
    from app.services import accounts  # noqa: PLC0415

    with database_session() as session:
        clinician = _clinician(session, username)
        accounts.unlock(session, clinician)
    click.echo(f"unlocked {clinician.username}")
