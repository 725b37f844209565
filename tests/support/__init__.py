"""What several test packages share: helpers (plain functions and types) and fixtures.

Import helpers from here, never from another package's conftest module (a conftest is pytest's
to load; importing one runs its fixtures' module a second time under another name). The fixtures
of servers.py, databases.py, platforms.py, s3.py and rate_limits.py are pytest plugins,
registered once by tests/conftest.py and made only when a test asks for them. kubernetes.py's
fixtures keep the short names its tests read best with (`server`, `cluster`, `executor`), so
they are not global: tests/k8s/conftest.py and any other module driving the fake cluster import
them. So do kubernetes_clusters.py's (`clusters`, and an `api` that tests/core/conftest.py's
would shadow): each module running runs on those two clusters imports them.
"""
