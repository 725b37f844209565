"""The run secrets' table (migration 0004): one encrypted value per org, project and name.

Its own module; `core.models` re-exports it (see core/webhooks/models.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, utcnow


class RunSecret(Base):
    """A secret value runs name as `{secret: NAME}`: org-wide (`project_id` = "") or a project's.

    Only ciphertext is stored (core/secrets/encryption.py), bound to its org, project and name.
    """

    __tablename__ = "run_secrets"
    __table_args__ = (
        UniqueConstraint("org_id", "project_id", "name", name="uq_run_secrets_org_project_name"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(40), default="")
    name: Mapped[str] = mapped_column(String(128))
    ciphertext: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(40), default=None)
    updated_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
