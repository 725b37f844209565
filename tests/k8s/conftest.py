"""Fixtures for the Kubernetes executor: a fake API server over HTTP, a simulator, an executor.

They are defined in tests/support/kubernetes.py (with the helpers the tests call), since tests
outside this package drive the fake cluster too; imported here, they serve this package.
"""

from __future__ import annotations

from tests.support.kubernetes import (  # noqa: F401 - this package's fixtures
    clock,
    cluster,
    executor,
    make_executor,
    server,
)
