"""Clinician accounts for the web form, their server-side sessions, and which clinician asked
for each evaluation made through the form.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Written by hand after the models and checked by the models-vs-migrations test. Adding a
nullable column needs no batch mode on SQLite; dropping one does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clinicians",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("disabled_at", TIME, nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", TIME, nullable=True),
        sa.Column("last_sign_in_at", TIME, nullable=True),
        sa.Column("password_changed_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinicians")),
        sa.UniqueConstraint("username", name=op.f("uq_clinicians_username")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("clinician_id", sa.String(36), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_seen_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["clinician_id"],
            ["clinicians.id"],
            name=op.f("fk_web_sessions_clinician_id_clinicians"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_clinician_id"), "web_sessions", ["clinician_id"])
    op.add_column("evaluations", sa.Column("clinician", sa.String(100), nullable=True))
    op.create_index(op.f("ix_evaluations_clinician"), "evaluations", ["clinician"])


def downgrade() -> None:
    op.drop_index(op.f("ix_evaluations_clinician"), table_name="evaluations")
    with op.batch_alter_table("evaluations") as batch:  # SQLite drops columns by copying
        batch.drop_column("clinician")
    op.drop_table("web_sessions")  # its index goes with it
    op.drop_table("clinicians")
