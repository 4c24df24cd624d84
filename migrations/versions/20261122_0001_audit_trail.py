"""Audit trail: evaluations and their per-rule-set decisions, every rule set version served,
API clients.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written from `alembic revision --autogenerate` and reviewed by hand: new tables need no batch
mode, and JSON is JSONB on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(36), nullable=True),
        sa.Column("patient_pseudonym", sa.String(64), nullable=True),
        sa.Column("rules_hash", sa.String(71), nullable=False),
        sa.Column("input_received", JSON, nullable=False),
        sa.Column("input_normalised", JSON, nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    for column in ("channel", "client_id", "created_at", "patient_pseudonym"):
        op.create_index(op.f(f"ix_evaluations_{column}"), "evaluations", [column])
    op.create_table(
        "ruleset_versions",
        sa.Column("hash", sa.String(71), nullable=False),
        sa.Column("ruleset_id", sa.String(100), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.Column("first_served_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_ruleset_versions")),
    )
    op.create_index(op.f("ix_ruleset_versions_ruleset_id"), "ruleset_versions", ["ruleset_id"])
    op.create_table(
        "evaluation_decisions",
        sa.Column("evaluation_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("ruleset_id", sa.String(100), nullable=False),
        sa.Column("ruleset_hash", sa.String(71), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_evaluation_decisions_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ruleset_hash"],
            ["ruleset_versions.hash"],
            name=op.f("fk_evaluation_decisions_ruleset_hash_ruleset_versions"),
        ),
        sa.PrimaryKeyConstraint("evaluation_id", "position", name=op.f("pk_evaluation_decisions")),
    )
    op.create_index(
        op.f("ix_evaluation_decisions_ruleset_hash"), "evaluation_decisions", ["ruleset_hash"]
    )
    op.create_index(
        "ix_evaluation_decisions_ruleset_status", "evaluation_decisions", ["ruleset_id", "status"]
    )


def downgrade() -> None:
    op.drop_table("evaluation_decisions")  # its indexes go with it
    op.drop_table("ruleset_versions")
    op.drop_table("evaluations")
    op.drop_table("api_clients")
