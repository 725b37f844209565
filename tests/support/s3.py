"""A real S3 endpoint for the session: moto's server mode on 127.0.0.1 (a pytest plugin).

Reached by boto3 and by httpx through presigned URLs; nothing is patched. Registered for the
whole suite by tests/conftest.py; the server starts only when a test asks for `s3_endpoint`.
Tests make the buckets they use (tests/support/training.py's `make_bucket`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.support.servers import free_port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
