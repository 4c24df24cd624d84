"""`eligo users add | list | disable | enable | password | unlock` against real databases, as
separate processes, with what they leave in the database checked through the service."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app.cli import main
from app.db.migrate import upgrade
from app.db.models import Clinician, WebSession
from app.db.session import make_engine, session_factory
from app.services import accounts
from tests.e2e.helpers import ELIGO, run_eligo

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test account's
NEW_PASSWORD = "a brand new passphrase, please"  # noqa: S105 - likewise
LISTED = {
    "id",
    "username",
    "display_name",
    "created_at",
    "disabled_at",
    "sign_in_paused",
    "last_sign_in_at",
    "password_changed_at",
}


def _piped(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`eligo ARGS` with `stdin` as its standard input (how scripts pass a password)."""
    return subprocess.run(
        [ELIGO, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def _add(env: dict[str, str], username: str = "Dr.Ng") -> subprocess.CompletedProcess[str]:
    added = _piped(
        env, PASSWORD + "\n", "users", "add", username, "--name", "Dr Ng", "--password-stdin"
    )
    assert added.returncode == 0, added.stderr
    return added


def _listed(env: dict[str, str]) -> list[dict[str, object]]:
    listed = run_eligo("users", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, object]] = json.loads(listed.stdout)
    return rows


def _clinician(url: str, username: str) -> tuple[Clinician, int]:
    """The stored clinician and how many sessions it has."""
    engine = make_engine(url)
    with session_factory(engine)() as session:
        clinician = accounts.find_clinician(session, username)
        assert clinician is not None
        count = len(
            session.scalars(select(WebSession).where(WebSession.clinician_id == clinician.id)).all()
        )
    engine.dispose()
    return clinician, count


def _start_session(url: str, username: str) -> None:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        clinician = accounts.find_clinician(session, username)
        assert clinician is not None
        accounts.start_session(session, clinician, datetime.now(UTC), max_hours=1)
        session.commit()
    engine.dispose()


def test_add_and_list(database_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": database_url}
    refused = run_eligo("users", "list", env=env)
    assert refused.returncode == 2
    assert "the database schema is not at head: run `eligo db upgrade` first" in refused.stderr
    upgrade(database_url)
    added = _add(env, " Dr.Ng ")
    assert added.stdout == "created clinician dr.ng\n"
    assert PASSWORD not in added.stdout + added.stderr

    as_json = run_eligo("users", "list", "--json", env=env).stdout
    (row,) = json.loads(as_json)
    assert set(row) == LISTED
    assert (row["username"], row["display_name"]) == ("dr.ng", "Dr Ng")
    assert (row["disabled_at"], row["sign_in_paused"]) == (None, [])
    table = run_eligo("users", "list", env=env)
    assert table.stdout == "dr.ng  Dr Ng  active\n"

    clinician, _ = _clinician(database_url, "dr.ng")
    assert clinician.password_hash.startswith("$argon2id$")
    assert accounts.verify_password(clinician.password_hash, PASSWORD).ok  # no newline kept
    everything = as_json + table.stdout
    assert "argon2" not in everything
    assert clinician.password_hash not in everything


def test_a_taken_user_name_and_a_weak_password_are_refused(database_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": database_url}
    upgrade(database_url)
    _add(env)
    duplicate = _piped(
        env, NEW_PASSWORD, "users", "add", "DR.NG", "--name", "Other", "--password-stdin"
    )
    assert duplicate.returncode == 2
    assert duplicate.stderr == "error: the user name 'dr.ng' is already taken\n"
    weak = _piped(env, "short one\n", "users", "add", "lee", "--name", "Dr Lee", "--password-stdin")
    assert weak.returncode == 2
    assert "error: the password is too short: use at least 15 characters" in weak.stderr
    with_name = _piped(
        env, "LEE" * 6, "users", "add", "lee", "--name", "Dr Lee", "--password-stdin"
    )
    assert with_name.returncode == 2
    assert "must not contain the user name" in with_name.stderr
    bad_name = _piped(
        env, PASSWORD, "users", "add", "dr lee", "--name", "Dr Lee", "--password-stdin"
    )
    assert bad_name.returncode == 2
    assert "a user name is 1 to 100 characters" in bad_name.stderr
    assert [row["username"] for row in _listed(env)] == ["dr.ng"]


def test_disable_enable_password_unlock(database_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": database_url}
    upgrade(database_url)
    _add(env)
    _start_session(database_url, "dr.ng")
    assert _clinician(database_url, "dr.ng")[1] == 1

    disabled = run_eligo("users", "disable", "DR.NG", env=env)
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout == "disabled dr.ng; their sessions have ended\n"
    clinician, sessions = _clinician(database_url, "dr.ng")
    assert clinician.disabled_at is not None
    assert sessions == 0
    assert run_eligo("users", "list", env=env).stdout.startswith("dr.ng  Dr Ng  disabled ")
    again = run_eligo("users", "disable", "dr.ng", env=env)
    assert (again.returncode, again.stderr) == (2, "error: clinician dr.ng was already disabled\n")

    assert run_eligo("users", "enable", "dr.ng", env=env).stdout == "enabled dr.ng\n"
    assert _clinician(database_url, "dr.ng")[0].disabled_at is None
    again = run_eligo("users", "enable", "dr.ng", env=env)
    assert (again.returncode, again.stderr) == (2, "error: clinician dr.ng is not disabled\n")

    _start_session(database_url, "dr.ng")
    weak = _piped(env, "x", "users", "password", "dr.ng", "--password-stdin")
    assert weak.returncode == 2
    assert "too short" in weak.stderr
    assert _clinician(database_url, "dr.ng")[1] == 1  # nothing changed
    changed = _piped(env, NEW_PASSWORD + "\r\n", "users", "password", "dr.ng", "--password-stdin")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout == "changed the password of dr.ng; their sessions have ended\n"
    clinician, sessions = _clinician(database_url, "dr.ng")
    assert sessions == 0
    assert accounts.verify_password(clinician.password_hash, NEW_PASSWORD).ok
    assert not accounts.verify_password(clinician.password_hash, PASSWORD).ok


def test_unlock(sqlite_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": sqlite_url}
    upgrade(sqlite_url)
    _add(env)
    engine = make_engine(sqlite_url)
    now = datetime.now(UTC)
    source = "192.0.2.10"
    with session_factory(engine)() as session:
        for attempt in range(accounts.MAX_FAILED_ATTEMPTS):
            with pytest.raises(accounts.SignInRefused):
                accounts.sign_in(session, "dr.ng", f"wrong guess {attempt}", now, source)
            session.commit()
    engine.dispose()
    (row,) = _listed(env)
    assert row["sign_in_paused"] == [
        {"source": source, "until": (now + accounts.LOCKOUT).isoformat()}
    ]
    listed = run_eligo("users", "list", env=env).stdout
    assert listed.startswith("dr.ng  Dr Ng  active; sign-in paused from 1 address until ")

    unlocked = run_eligo("users", "unlock", "dr.ng", env=env)
    assert (unlocked.returncode, unlocked.stdout) == (0, "unlocked dr.ng\n")
    (row,) = _listed(env)
    assert row["sign_in_paused"] == []
    engine = make_engine(sqlite_url)
    with session_factory(engine)() as session:
        later = now + timedelta(seconds=1)
        assert accounts.sign_in(session, "dr.ng", PASSWORD, later, source).username == "dr.ng"
    engine.dispose()


def test_unknown_users_and_empty_input_are_usage_errors(sqlite_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": sqlite_url}
    upgrade(sqlite_url)
    for command in ("disable", "enable", "unlock"):
        unknown = run_eligo("users", command, "nobody", env=env)
        assert unknown.returncode == 2
        assert unknown.stderr == "error: no clinician 'nobody'; see `eligo users list`\n"
    empty = _piped(env, "", "users", "add", "lee", "--name", "L", "--password-stdin")
    assert empty.returncode == 2
    assert "standard input is empty" in empty.stderr
    no_name = run_eligo("users", "add", "lee", "--password-stdin", env=env)
    assert no_name.returncode == 2
    assert "Missing option '--name'" in no_name.stderr
    assert _listed(env) == []


def test_the_password_prompt_hides_and_confirms(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    result = CliRunner().invoke(
        main,
        ["users", "add", "lee", "--name", "Dr Lee"],
        input=f"{PASSWORD}\nnot the same, oops\n{PASSWORD}\n{PASSWORD}\n",
        env={"ELIGO_DATABASE_URL": sqlite_url},
    )
    assert result.exit_code == 0, result.output
    assert "The two entered values do not match." in result.output
    assert result.output.count("Password: ") == 2
    assert PASSWORD not in result.output
    assert result.output.endswith("created clinician lee\n")
    clinician, _ = _clinician(sqlite_url, "lee")
    assert accounts.verify_password(clinician.password_hash, PASSWORD).ok
