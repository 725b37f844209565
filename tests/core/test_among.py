"""`db.among`: `column IN values` on either backend (one array parameter on PostgreSQL)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import among, session_scope
from core.models import Run
from tests.factories import create_run, make_tenant


def test_among_selects_exactly_the_rows_named_on_either_backend(any_client: TestClient) -> None:
    tenant = make_tenant(any_client)
    ids = [create_run(any_client, tenant)["id"] for _ in range(3)]
    factory: sessionmaker[Session] = any_client.app.state.sessionmaker  # type: ignore[attr-defined]
    named = {ids[0], ids[2], "run_not_there"}
    with session_scope(factory) as session:
        found = set(session.scalars(select(Run.id).where(among(session, Run.id, named))))
        none = list(session.scalars(select(Run.id).where(among(session, Run.id, set()))))
    assert found == {ids[0], ids[2]}
    assert none == []
