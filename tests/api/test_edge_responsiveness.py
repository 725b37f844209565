"""The API stays responsive while large bodies arrive (issue 12, finding 6), on a live uvicorn.

Before: a 1 MB YAML body to `POST /v1/runs` was parsed on the event loop before the key was
looked at, and `/healthz` stalled for seconds. Now an unauthenticated body is never parsed, and
an authenticated YAML body is bounded and parsed in a worker thread.
"""

from __future__ import annotations

import threading
import time

import httpx

from tests.support.servers import StartServer

BIG_YAML = b"command: [" + b", ".join(b"'a%d'" % i for i in range(100_000)) + b"]\n"


def test_healthz_answers_promptly_while_big_yaml_bodies_arrive(
    start_server: StartServer, postgres_url: str
) -> None:
    server = start_server(postgres_url)
    assert len(BIG_YAML) < 1_048_576  # under the body limit: it reaches the route
    headers = {"Content-Type": "application/yaml", "Authorization": "Bearer tp_random_0000000000"}
    answers: list[int] = []

    def post() -> None:
        answers.append(
            httpx.post(
                f"{server.url}/v1/runs", content=BIG_YAML, headers=headers, timeout=60
            ).status_code
        )

    posters = [threading.Thread(target=post) for _ in range(4)]
    for poster in posters:
        poster.start()
    slowest = 0.0
    with httpx.Client(timeout=30) as probe:
        while any(p.is_alive() for p in posters):
            started = time.perf_counter()
            assert probe.get(f"{server.url}/healthz").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
    for poster in posters:
        poster.join()
    assert answers == [401] * 4
    assert slowest < 1.0, f"/healthz took {slowest:.2f} s"  # it took 5-11 s before
