"""`client.webhooks` and `trainport webhooks ...` against the live API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trainport
from tests.factories import PUBLIC_HOOK, Tenant

TRAINPORT = Path(sys.executable).with_name("trainport")


def test_the_client_manages_endpoints_and_reads_the_delivery_log(sdk: trainport.Client) -> None:
    made = sdk.webhooks.create(PUBLIC_HOOK, event_types=["run.finished"], description="ci")
    assert made.secret is not None
    assert made.secret.startswith("whsec_")
    assert sdk.webhooks.get(made.id).secret is None
    assert [e.id for e in sdk.webhooks.list()] == [made.id]
    paused = sdk.webhooks.update(made.id, enabled=False, event_types=["run.created"])
    assert (paused.enabled, paused.event_types) == (False, ["run.created"])
    rotated = sdk.webhooks.rotate_secret(made.id)
    assert rotated.secret not in {None, made.secret}
    ping = sdk.webhooks.ping(made.id)
    assert [d.id for d in sdk.webhooks.deliveries(made.id)] == [ping.id]
    detail = sdk.webhooks.delivery(made.id, ping.id)
    assert detail.payload is not None
    assert detail.payload["type"] == "webhook.ping"
    assert sdk.webhooks.redeliver(made.id, ping.id).status == "pending"
    with pytest.raises(trainport.ValidationError):
        sdk.webhooks.create("http://127.0.0.1:9/hook")
    sdk.webhooks.delete(made.id)
    with pytest.raises(trainport.NotFound):
        sdk.webhooks.get(made.id)


def test_the_cli_prints_the_secret_once_and_lists(
    api_url: str, sdk_tenant: Tenant, config_file: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env.update(
        TRAINPORT_CONFIG=str(config_file),
        TRAINPORT_API_URL=api_url,
        TRAINPORT_API_KEY=sdk_tenant.key,
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(TRAINPORT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done

    made = cli("webhooks", "create", PUBLIC_HOOK, "-e", "run.finished")
    assert made.stdout.strip().startswith("whsec_")
    [endpoint] = json.loads(cli("webhooks", "list", "-o", "json").stdout)
    assert made.stdout.strip() not in json.dumps(endpoint)
    cli("webhooks", "ping", endpoint["id"])
    [delivery] = json.loads(cli("webhooks", "deliveries", endpoint["id"], "-o", "json").stdout)
    assert delivery["event_type"] == "webhook.ping"
    cli("webhooks", "redeliver", endpoint["id"], delivery["id"])
    assert cli("webhooks", "rotate-secret", endpoint["id"]).stdout.startswith("whsec_")
    cli("webhooks", "update", endpoint["id"], "--disable")
    cli("webhooks", "delete", endpoint["id"])
    assert json.loads(cli("webhooks", "list", "-o", "json").stdout) == []
