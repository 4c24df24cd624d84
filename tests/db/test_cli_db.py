"""`eligo db current | upgrade` against real databases."""

from __future__ import annotations

from app.db.migrate import head
from tests.e2e.helpers import run_eligo


def test_current_is_behind_until_upgrade(database_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": database_url}
    behind = run_eligo("db", "current", env=env)
    assert behind.returncode == 1
    assert f"database at revision (empty) (head {head()})" in behind.stdout
    upgraded = run_eligo("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {head()} (head {head()})" in upgraded.stdout
    assert run_eligo("db", "current", env=env).returncode == 0
