"""Registry screenings run as server jobs: what was asked (never a patient value), the state,
progress and heartbeat of the current attempt, and the counts once done.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Written by hand after the models and checked by the models-vs-migrations test. A new table
needs no batch mode. The state list is spelled out, not imported: a migration is a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "screenings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("heartbeat_at", TIME, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("request", JSON, nullable=False),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("summary", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rules_hash", sa.String(71), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_screenings_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screenings")),
    )
    op.create_index(
        "ix_screenings_state_created_at", "screenings", ["state", "created_at"], unique=False
    )
    op.create_index(
        "ix_screenings_client_id_created_at",
        "screenings",
        ["client_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("screenings")  # its indexes go with it
