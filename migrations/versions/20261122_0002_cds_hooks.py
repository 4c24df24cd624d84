"""CDS Hooks: the hookInstance of each CDS decision, the cards served (so feedback can name the
decision it is about), the feedback itself, and the client JWT ids already used (replay guard).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Written by hand after the models and checked by the models-vs-migrations test. Adding a
nullable column needs no batch mode on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("hook_instance", sa.String(64), nullable=True))
    op.create_index(op.f("ix_evaluations_hook_instance"), "evaluations", ["hook_instance"])
    op.create_table(
        "cds_cards",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("evaluation_id", sa.String(36), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("ruleset_id", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_cds_cards_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_cds_cards")),
    )
    op.create_index(op.f("ix_cds_cards_evaluation_id"), "cds_cards", ["evaluation_id"])
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", JSON, nullable=False),
        sa.Column("override_reason", JSON, nullable=True),
        sa.Column("outcome_timestamp", TIME, nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["card_uuid"],
            ["cds_cards.uuid"],
            name=op.f("fk_cds_feedback_card_uuid_cds_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cds_feedback")),
    )
    op.create_index(op.f("ix_cds_feedback_card_uuid"), "cds_feedback", ["card_uuid"])
    op.create_table(
        "cds_token_uses",
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name=op.f("pk_cds_token_uses")),
    )
    op.create_index(op.f("ix_cds_token_uses_expires_at"), "cds_token_uses", ["expires_at"])


def downgrade() -> None:
    op.drop_table("cds_token_uses")
    op.drop_table("cds_feedback")
    op.drop_table("cds_cards")
    op.drop_index(op.f("ix_evaluations_hook_instance"), table_name="evaluations")
    with op.batch_alter_table("evaluations") as batch:  # SQLite drops columns by copying
        batch.drop_column("hook_instance")
