"""The installation id that labels (and scopes) everything a Trainport makes on a cluster."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from core.installation import installation_id
from core.kubernetes import naming
from core.settings import Settings


def test_an_installation_id_is_made_once_per_database_and_kept(
    make_database: Callable[[], str],
) -> None:
    url = make_database()
    with ThreadPoolExecutor(4) as pool:  # workers starting together agree on one
        ids = set(pool.map(lambda _: installation_id(Settings(database_url=url)), range(8)))
    assert len(ids) == 1
    first = ids.pop()
    assert naming.label_value(first) == first
    assert installation_id(Settings(database_url=url)) == first  # a restart keeps it
    assert installation_id(Settings(database_url=make_database())) != first


def test_a_configured_installation_id_wins(fresh_url: str) -> None:
    settings = Settings(database_url=fresh_url, installation_id="prod-eu")
    assert installation_id(settings) == "prod-eu"
