"""Metrics and progress: large volumes accepted, downsampled reads, heartbeats, lost work."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from core.runs.attempts import AttemptOutcome
from tests.factories import Tenant
from tests.support.training import end_attempt, start, submit

TOTAL_POINTS = 100_000
BATCH = 10_000


def _batch(first: int) -> dict[str, object]:
    points = [
        {"step": s, "values": {"loss": 10.0 / (1 + s) + (5.0 if s == 54_321 else 0.0)}}
        for s in range(first, first + BATCH)
    ]
    return {"points": points}


def test_100k_points_are_accepted_and_read_back_downsampled_quickly(
    api: TestClient, org: Tenant
) -> None:
    run = start(api, submit(api, org))
    began = time.perf_counter()
    for first in range(0, TOTAL_POINTS, BATCH):
        response = api.post(
            f"/v1/runs/{run.run_id}/metrics", json=_batch(first), headers=run.headers
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": BATCH}
    posting = time.perf_counter() - began
    began = time.perf_counter()
    response = api.get(
        f"/v1/runs/{run.run_id}/metrics?name=loss&max_points=500", headers=org.headers
    )
    reading = time.perf_counter() - began
    series = response.json()["series"]["loss"]
    assert 400 <= len(series["steps"]) <= 500
    assert series["steps"][0] == 0
    assert series["steps"][-1] == TOTAL_POINTS - 1
    assert series["steps"] == sorted(series["steps"])
    assert 54_321 in series["steps"]  # a spike survives min/max bucketing
    assert posting < 20, f"posting 100k points took {posting:.2f}s"
    assert reading < 1.0, f"the downsampled read took {reading:.3f}s"


def test_a_downsampled_series_never_repeats_a_point(api: TestClient, org: Tenant) -> None:
    """Seen: `steps [1, 1, 380, 400]`: the first point was also its bucket's extreme."""
    run = start(api, submit(api, org))
    points = [{"step": s, "values": {"loss": 10.0 / s}} for s in range(1, 401)]
    api.post(f"/v1/runs/{run.run_id}/metrics", json={"points": points}, headers=run.headers)
    for max_points in (2, 4, 6, 50):
        query = f"?name=loss&max_points={max_points}"
        series = api.get(f"/v1/runs/{run.run_id}/metrics" + query, headers=org.headers).json()
        loss = series["series"]["loss"]
        pairs = list(zip(loss["steps"], loss["values"], strict=True))
        assert len(pairs) == len(set(pairs)), (max_points, pairs)
        assert 2 <= len(pairs) <= max_points
        assert (pairs[0][0], pairs[-1][0]) == (1, 400)


def test_all_series_are_returned_when_none_is_named(api: TestClient, org: Tenant) -> None:
    run = start(api, submit(api, org))
    points = [{"step": s, "values": {"loss": 1.0 / (s + 1), "lr": 0.1}} for s in range(10)]
    points.append({"step": 10, "values": {"loss": float("nan"), "lr": 0.2}})
    body = json.dumps({"points": points})  # Python writes NaN, as a runtime's json.dumps would
    headers = {**org.headers, "Content-Type": "application/json"}
    response = api.post(f"/v1/runs/{run.run_id}/metrics", content=body, headers=headers)
    assert response.json() == {"accepted": 11}
    series = api.get(f"/v1/runs/{run.run_id}/metrics", headers=org.headers).json()["series"]
    assert set(series) == {"loss", "lr"}
    assert series["loss"]["steps"] == list(range(10))  # the NaN was dropped
    assert series["lr"]["values"][-1] == 0.2


def test_oversized_batches_are_refused(api: TestClient, org: Tenant) -> None:
    run = start(api, submit(api, org))
    too_many = {"points": [{"step": s, "values": {"x": 1.0}} for s in range(10_001)]}
    response = api.post(f"/v1/runs/{run.run_id}/metrics", json=too_many, headers=run.headers)
    assert response.status_code == 422
    bad_name = {"points": [{"step": 1, "values": {"has space": 1.0}}]}
    response = api.post(f"/v1/runs/{run.run_id}/metrics", json=bad_name, headers=run.headers)
    assert response.status_code == 422


def test_heartbeats_give_the_run_progress_latest_metrics_and_an_estimate(
    api: TestClient, org: Tenant
) -> None:
    run = start(api, submit(api, org))
    url = f"/v1/runs/{run.run_id}"
    before = api.get(url, headers=org.headers).json()
    assert (before["progress"], before["latest_metrics"], before["estimated_finish"]) == (
        None,
        {},
        None,
    )
    beat = {"step": 0, "total_steps": 1000}
    assert api.post(f"{url}/heartbeat", json=beat, headers=run.headers).status_code == 204
    points = [{"step": 99, "values": {"loss": 2.5}}, {"step": 100, "values": {"loss": 2.0}}]
    api.post(f"{url}/metrics", json={"points": points}, headers=run.headers)
    # The step rate needs time between two heartbeats: beat again until the clock has moved.
    deadline = time.monotonic() + 10
    while True:
        api.post(f"{url}/heartbeat", json={"step": 100}, headers=run.headers)
        after = api.get(url, headers=org.headers).json()
        if after["estimated_finish"] is not None or time.monotonic() > deadline:
            break
    assert after["progress"] == {"step": 100, "total_steps": 1000, "fraction": 0.1}
    assert after["latest_metrics"] == {"loss": 2.0}
    assert after["estimated_finish"] is not None
    assert after["estimated_finish"] > after["last_heartbeat_at"]
    assert after["resource_version"] > before["resource_version"]


def test_a_resumed_attempt_records_its_step_and_the_work_lost(api: TestClient, org: Tenant) -> None:
    run_id = submit(api, org, scheduling={"max_retries": 1})
    first = start(api, run_id)
    url = f"/v1/runs/{run_id}"
    api.post(f"{url}/heartbeat", json={"step": 0, "total_steps": 500}, headers=first.headers)
    api.post(
        f"{url}/metrics",
        json={"points": [{"step": 130, "values": {"loss": 1.0}}]},
        headers=first.headers,
    )
    assert end_attempt(api, run_id, AttemptOutcome.SYSTEM_FAILED) == "queued"
    second = start(api, run_id)
    assert second.attempt == 2
    beat = {"step": 100, "resumed_from_step": 100}
    assert api.post(f"{url}/heartbeat", json=beat, headers=second.headers).status_code == 204
    attempts = api.get(url, headers=org.headers).json()["attempts"]
    assert [(a["resumed_from_step"], a["steps_lost"]) for a in attempts] == [
        (None, None),
        (100, 30),
    ]
