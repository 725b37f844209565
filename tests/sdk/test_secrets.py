"""`client.secrets` and `trainport secrets set/ls/rm` against the live API: values go in, never
come back out, and the CLI takes a value only from stdin or a hidden prompt."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

import trainport
from tests.factories import Tenant

TRAINPORT = Path(sys.executable).with_name("trainport")


def test_set_creates_then_rotates_and_nothing_returns_the_value(sdk: trainport.Client) -> None:
    value = f"canary-{secrets.token_hex(8)}"
    created = sdk.secrets.set("wandb", value)
    assert (created.name, created.version, created.project_id) == ("wandb", 1, None)
    rotated = sdk.secrets.set("wandb", value + "-2")
    assert rotated.version == 2
    listed = sdk.secrets.list()
    assert [(s.name, s.version) for s in listed] == [("wandb", 2)]
    assert value not in str([s.to_dict() for s in listed]) + str(sdk.secrets.get("wandb"))
    sdk.projects.create("lab")
    scoped = sdk.secrets.create("wandb", "lab-value", project="lab")
    assert scoped.project_id is not None
    assert [s.project_id for s in sdk.secrets.list(project="lab")] == [scoped.project_id]
    with pytest.raises(trainport.Conflict):
        sdk.secrets.create("wandb", "again")
    sdk.secrets.delete("wandb")
    with pytest.raises(trainport.NotFound):
        sdk.secrets.get("wandb")


def test_the_async_client_manages_secrets_too(api_url: str, sdk_tenant: Tenant) -> None:
    async def scenario() -> list[int]:
        async with trainport.AsyncClient(base_url=api_url, api_key=sdk_tenant.key) as client:
            first = await client.secrets.set("hf-token", "one")
            second = await client.secrets.set("hf-token", "two")
            await client.secrets.delete("hf-token")
            return [first.version, second.version, len(await client.secrets.list())]

    assert asyncio.run(scenario()) == [1, 2, 0]


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TRAINPORT), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_reads_the_value_from_stdin_and_never_prints_it(
    api_url: str, sdk_tenant: Tenant, config_file: Path, sdk: trainport.Client
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env.update(
        TRAINPORT_CONFIG=str(config_file),
        TRAINPORT_API_URL=api_url,
        TRAINPORT_API_KEY=sdk_tenant.key,
    )
    value = f"canary-{secrets.token_hex(8)}"
    made = _cli(env, "secrets", "set", "wandb", stdin=value + "\n")
    assert made.returncode == 0, made.stderr
    assert "wandb" in made.stderr
    assert "v1" in made.stderr
    listed = _cli(env, "secrets", "ls", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert '"wandb"' in listed.stdout
    removed = _cli(env, "secrets", "rm", "wandb")
    assert removed.returncode == 0, removed.stderr
    for result in (made, listed, removed):
        assert value not in result.stdout + result.stderr
    assert sdk.secrets.list() == []
    empty = _cli(env, "secrets", "set", "wandb", stdin="")
    assert empty.returncode != 0
    assert _cli(env, "secrets", "set", "wandb", value).returncode != 0  # no value argument
