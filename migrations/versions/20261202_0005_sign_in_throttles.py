"""Failed sign-ins counted per (user name, source) and per source instead of per account: a
clinician can no longer be locked out by someone else's guesses (issue 17).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Written by hand after the models and checked by the models-vs-migrations test. The account
lockout columns of `clinicians` go: nothing reads them any more. They are dropped with a plain
ALTER TABLE (SQLite 3.35+), not batch mode: batch mode copies the table and drops the old one,
and with foreign keys on, SQLite would delete every web session with it (ON DELETE CASCADE).
Counts in progress are not carried over; the worst that loses is one lockout.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sign_in_throttles",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", TIME, nullable=False),
        sa.Column("blocked_until", TIME, nullable=True),
        sa.PrimaryKeyConstraint("account", "source", name=op.f("pk_sign_in_throttles")),
    )
    op.create_index(
        op.f("ix_sign_in_throttles_window_started_at"), "sign_in_throttles", ["window_started_at"]
    )
    op.drop_column("clinicians", "failed_attempts")
    op.drop_column("clinicians", "locked_until")


def downgrade() -> None:
    # Every clinician starts again unlocked, with no failures counted (the default fills the
    # rows already there; it stays, which 0004 did not have and nothing minds).
    op.add_column(
        "clinicians",
        sa.Column("failed_attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("clinicians", sa.Column("locked_until", TIME, nullable=True))
    op.drop_table("sign_in_throttles")  # its index goes with it
