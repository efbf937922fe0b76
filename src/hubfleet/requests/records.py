"""The request database's tables (SQLAlchemy 2 declarative models).

The schema itself is owned by the Alembic migrations in ``migrations/versions/``: ``database.migrate`` brings a
database to head, and a test checks that the migrations and these models agree, so neither drifts.

Times are stored as timezone-aware UTC. ``HubRequest.version`` is bumped by every state change through a
conditional UPDATE (``... WHERE id = ? AND version = ?``), which is what makes two concurrent approvals of the same
request happen once on SQLite and PostgreSQL alike (``workflow.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["AuditEntry", "Base", "Comment", "HubRequest", "Review"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: DateTime(timezone=True)}


class HubRequest(Base):
    """One request: a new presentation (or course), or a change to an approved one."""

    __tablename__ = "hub_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # new | change
    course: Mapped[str] = mapped_column(String(64), index=True)
    presentation: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(64), index=True)
    requester: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    # The form as submitted (the course file is built from it again at approval, against the catalog of that moment).
    form: Mapped[dict[str, Any]] = mapped_column()
    roster_csv: Mapped[str | None] = mapped_column(Text)
    commit: Mapped[str | None] = mapped_column(String(64))  # the catalog commit approval wrote
    branch: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    reviews: Mapped[list[Review]] = relationship(back_populates="request", order_by="Review.id")
    comments: Mapped[list[Comment]] = relationship(back_populates="request", order_by="Comment.id")


class Review(Base):
    """A reviewer's decision: approve, reject or request changes, with its reason."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("hub_requests.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    request: Mapped[HubRequest] = relationship(back_populates="reviews")


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("hub_requests.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    request: Mapped[HubRequest] = relationship(back_populates="comments")


class AuditEntry(Base):
    """Every action tried through the pages, allowed or refused, with who and on what."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), index=True)  # request:12, hub:tm351-2026j
    allowed: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
