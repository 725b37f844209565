"""Fixtures for the dashboard's browser tests: a real platform and a real browser.

One platform and one browser for the whole package (package-scoped: started once for every
browser test, and stopped before later suites run, since Playwright's sync API keeps an event
loop in this thread while it is open): one database of its own (cloned from the migrated template of
tests/support/databases.py, since a worker admits every run it finds), a live API
(`uvicorn api.main:app`) and an embedded worker tree on it sharing one state folder (so the API
reads the logs the local executor writes), an org with an admin key, and Debian's chromium driven
by Playwright. axe-core (the accessibility checks) comes from tests/dashboard/node_modules,
installed from its package-lock.json by scripts/services.sh.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from core import db
from core.db import session_scope
from core.settings import Settings
from core.tenants.service import bootstrap
from tests.dashboard.live import Platform
from tests.support.platforms import Platforms
from tests.support.postgres import clone_database, database_url, drop_database
from tests.support.servers import StartServer

CHROMIUM = os.environ.get("TRAINPORT_TEST_CHROMIUM") or shutil.which("chromium")
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


def _bootstrap_org(database_url: str) -> str:
    engine = db.build_engine(Settings(database_url=database_url))
    try:
        with session_scope(db.make_sessionmaker(engine)) as session:
            return bootstrap(session, "acme").secret
    finally:
        engine.dispose()


@pytest.fixture(scope="package")
def platform(
    template_db: str, start_server: StartServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    name = clone_database(template_db)
    url = database_url(name)
    state = tmp_path_factory.mktemp("dashboard") / "state"
    platforms = Platforms(state.parent)
    try:
        server = start_server(url, state_dir=str(state))
        platforms.start(url, state_dir=state, public_url=server.url)
        key = _bootstrap_org(url)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
            yield Platform(server.url, key, api, url)
    finally:
        platforms.stop_all()
        drop_database(name)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Package-scoped, not session-scoped: Playwright's sync API keeps an event loop running in
    this thread while it is open, and later suites call asyncio.run()."""
    if not CHROMIUM or not Path(CHROMIUM).exists():
        pytest.fail("no chromium: scripts/services.sh installs it (apt-get install chromium).")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) that fails the test on any script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


@pytest.fixture(scope="package")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(
            "no axe-core: scripts/services.sh installs it (npm ci --prefix tests/dashboard)."
        )
    return AXE.read_text(encoding="utf-8")
