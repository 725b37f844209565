"""A run that names no dataset has no pins, and asking for them costs no statement: every
launch asks twice (its provenance record, its environment; issue 17)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker
from core.datasets.pinning import pinned
from core.db import session_scope
from core.models import Run
from tests.factories import app_of, create_run, make_tenant
from tests.support.databases import statements_run


def test_a_run_without_datasets_is_answered_without_a_statement(any_client: TestClient) -> None:
    run_id = create_run(any_client, make_tenant(any_client))["id"]
    factory = app_sessionmaker(app_of(any_client))
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        assert run is not None
        with statements_run(factory.kw["bind"]) as seen:
            assert pinned(session, run) == {}
    assert seen == []
