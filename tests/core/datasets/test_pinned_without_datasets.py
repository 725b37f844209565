"""A run that names no dataset has no pins, and asking for them costs no statement: every
launch asks twice (its provenance record, its environment; issue 17)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import event

from api.app_state import app_sessionmaker
from core.datasets.pinning import pinned
from core.db import session_scope
from core.models import Run
from tests.factories import app_of, create_run, make_tenant


def test_a_run_without_datasets_is_answered_without_a_statement(any_client: TestClient) -> None:
    run_id = create_run(any_client, make_tenant(any_client))["id"]
    factory = app_sessionmaker(app_of(any_client))
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        assert run is not None
        engine = factory.kw["bind"]
        event.listen(engine, "before_cursor_execute", before)
        try:
            assert pinned(session, run) == {}
        finally:
            event.remove(engine, "before_cursor_execute", before)
    assert seen == []
