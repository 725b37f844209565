"""`client.me()`, `client.projects` and `client.api_keys` against the live API."""

from __future__ import annotations

import pytest

import trainport
from tests.factories import Tenant


def test_me_names_the_organisation_and_the_key(sdk: trainport.Client, sdk_tenant: Tenant) -> None:
    me = sdk.me()
    assert me.organization.id == sdk_tenant.org_id
    assert me.key.role == "admin"
    assert sdk_tenant.key.startswith(me.key.prefix)


def test_projects_are_created_listed_and_read(sdk: trainport.Client, sdk_tenant: Tenant) -> None:
    made = sdk.projects.create("vision", description="image models")
    assert (made.name, made.description) == ("vision", "image models")
    assert {p.name for p in sdk.projects.list()} == {"default", "vision"}
    assert sdk.projects.get(made.id) == made
    assert sdk.projects.get(sdk_tenant.project_id).name == "default"


def test_api_keys_are_minted_listed_and_revoked(api_url: str, sdk: trainport.Client) -> None:
    minted = sdk.api_keys.create("ci", role="member", project="default", expires_in_days=30)
    assert minted.key.startswith(minted.prefix)
    assert minted.expires_at is not None
    listed = {k.id: k for k in sdk.api_keys.list()}
    assert listed[minted.id].role == "member"
    assert "key" not in listed[minted.id].model_dump()  # the secret is never listed
    with trainport.Client(base_url=api_url, api_key=minted.key) as ci:
        assert ci.me().key.id == minted.id
        sdk.api_keys.revoke(minted.id)
        with pytest.raises(trainport.AuthenticationError):
            ci.me()
    revoked = {k.id: k for k in sdk.api_keys.list()}[minted.id]
    assert revoked.revoked_at is not None


def test_models_keep_fields_the_sdk_does_not_know_yet() -> None:
    run = trainport.Run.model_validate(
        {
            "id": "run_1",
            "name": "r",
            "project_id": "p",
            "status": "paused_for_science",
            "resource_version": 3,
            "created_at": "2025-01-01T00:00:00Z",
            "gpu_hours": 1.5,
        }
    )
    assert run.status == "paused_for_science"
    assert run.to_dict()["gpu_hours"] == 1.5
    assert not run.is_terminal
    assert run.etag == '"3"'
