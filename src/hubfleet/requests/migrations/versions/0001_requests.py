"""Requests, reviews, comments and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hub_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("course", sa.String(64), nullable=False),
        sa.Column("presentation", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(64), nullable=True),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("form", sa.JSON, nullable=False),
        sa.Column("roster_csv", sa.Text, nullable=True),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("branch", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    for col in ("course", "unit", "requester", "state"):
        op.create_index(f"ix_hub_requests_{col}", "hub_requests", [col])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("hub_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_reviews_request_id", "reviews", ["request_id"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("hub_requests.id", ondelete="CASCADE"), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_comments_request_id", "comments", ["request_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    for col in ("at", "actor", "target"):
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("comments")
    op.drop_table("reviews")
    op.drop_table("hub_requests")
