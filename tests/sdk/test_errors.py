"""Typed exceptions from the live API's problem documents: status, code, detail, field pointers."""

from __future__ import annotations

import pytest

import trainport
from tests.support.servers import free_port

SPEC = {"image": "python:3.11-slim", "command": ["python", "-c", "print('hi')"]}


def test_a_missing_run_is_not_found_with_the_problem_fields(sdk: trainport.Client) -> None:
    with pytest.raises(trainport.NotFound) as raised:
        sdk.runs.get("run_does_not_exist")
    error = raised.value
    assert (error.status_code, error.code) == (404, "not_found")
    assert "run_does_not_exist" in error.detail
    assert error.request_id
    assert str(error) == f"{error.detail} (not_found, HTTP 404)"
    assert isinstance(error, trainport.APIStatusError)
    assert isinstance(error, trainport.TrainportError)


def test_an_invalid_spec_is_a_validation_error_pointing_at_each_field(
    sdk: trainport.Client,
) -> None:
    spec = trainport.RunSpec.from_dict(SPEC).with_overrides(
        {"compute.nodes": 0, "labels.trainport.dev/x": "y"}
    )
    with pytest.raises(trainport.ValidationError) as raised:
        sdk.runs.create(spec)
    pointers = {e.pointer for e in raised.value.errors}
    assert {"/compute/nodes", "/labels"} <= pointers
    assert raised.value.code == "validation_error"


def test_a_bad_query_parameter_names_the_parameter(sdk: trainport.Client) -> None:
    with pytest.raises(trainport.ValidationError) as raised:
        sdk.runs.list(limit=5000)
    assert [e.parameter for e in raised.value.errors] == ["limit"]
    assert str(raised.value.errors[0]).startswith("limit: ")


def test_a_wrong_key_is_an_authentication_error(api_url: str) -> None:
    client = trainport.Client(base_url=api_url, api_key="tp_" + "x" * 43)
    with client, pytest.raises(trainport.AuthenticationError) as raised:
        client.runs.list()
    assert raised.value.status_code == 401


def test_a_viewer_key_may_read_but_not_write(api_url: str, sdk: trainport.Client) -> None:
    viewer = sdk.api_keys.create("read-only", role="viewer")
    with trainport.Client(base_url=api_url, api_key=viewer.key) as client:
        assert list(client.runs.list()) == []
        with pytest.raises(trainport.PermissionDenied) as raised:
            client.runs.create(SPEC)
    assert raised.value.status_code == 403


def test_a_duplicate_project_is_a_conflict_with_its_code(sdk: trainport.Client) -> None:
    sdk.projects.create("dupe")
    with pytest.raises(trainport.Conflict) as raised:
        sdk.projects.create("dupe")
    assert raised.value.code == "already_exists"


def test_a_closed_port_is_an_api_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = trainport.Client(base_url=url, api_key="tp_k", max_retries=0)
    with client, pytest.raises(trainport.APIConnectionError, match="Cannot reach the Trainport"):
        client.me()
