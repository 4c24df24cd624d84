"""PostgreSQL: the audit trail's JSON columns compressed with LZ4 instead of pglz.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

A recorded evaluation's JSON values are over PostgreSQL's 2 kB TOAST threshold (the normalised
input of every rule set is ~9 kB), so each is compressed as it is written; pglz made that a
sixth of the database server's CPU per evaluation (measured here: ~720 -> ~600 µs an insert with
LZ4; issue 18). LZ4 (PostgreSQL 14 and later, when the server is built with it, as Debian's
and the official images are) is several times faster at a similar size. Only values written
from now on use it; older ones are read as they are. A server without LZ4 keeps pglz: the
migration does not fail for it. Nothing to do on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("input_received", "input_normalised", "result")


def _set_compression(method: str) -> str:
    alter = ", ".join(f"ALTER COLUMN {c} SET COMPRESSION {method}" for c in COLUMNS)
    # feature_not_supported: a server built without LZ4 (or older than 14: syntax_error).
    return f"""
DO $$
BEGIN
    ALTER TABLE evaluations {alter};
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'evaluations keeps its JSON compression: %', SQLERRM;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_set_compression("lz4"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_set_compression("default"))
