"""A plan shows where a Kubernetes run's secrets would come from, never what they are (issue 20).

`POST /v1/runs/plan` renders the org's Secret with its name and the keys the pods read through
`secretKeyRef`; each value is a placeholder naming the secret. A canary value, set through the
API for the org and for the project, appears nowhere in the answer, in any encoding.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.kubernetes import naming
from core.secrets.service import store_key
from tests.factories import make_tenant, run_spec
from tests.support.plans import NODES, api_with, register
from tests.support.secrets import canary, set_secret


@pytest.fixture
def kube(fresh_url: str) -> Iterator[TestClient]:
    client = api_with(fresh_url)
    register(client, "east", "kubernetes", NODES)
    yield client
    client.app.state.engine.dispose()  # type: ignore[attr-defined]


def test_a_plan_names_the_org_secret_and_its_keys_and_holds_no_value(kube: TestClient) -> None:
    tenant = make_tenant(kube)
    org_value, project_value = canary(), canary()
    set_secret(kube, tenant, "hf-token", org_value)
    set_secret(kube, tenant, "wandb", org_value)
    set_secret(kube, tenant, "wandb", project_value, project="default")  # the project's wins
    env = {"HF": {"secret": "hf-token"}, "WANDB": {"secret": "wandb"}, "PLAIN": "1"}
    response = kube.post("/v1/runs/plan", json=run_spec(env=env), headers=tenant.headers)
    assert response.status_code == 200, response.text
    for value in (org_value, project_value):
        for form in (value, base64.b64encode(value.encode()).decode()):
            assert form not in response.text
    secret, job, _ = response.json()["manifests"]
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == naming.org_secret_name(tenant.org_id)
    hf_key, wandb_key = store_key("", "hf-token"), store_key(tenant.project_id, "wandb")
    assert secret["data"] == {
        hf_key: "<the value of secret 'hf-token', written at launch>",
        wandb_key: "<the value of secret 'wandb', written at launch>",
    }
    container = job["spec"]["template"]["spec"]["containers"][0]
    refs = {v["name"]: v["valueFrom"] for v in container["env"] if "valueFrom" in v}
    name = secret["metadata"]["name"]
    assert refs["HF"] == {"secretKeyRef": {"name": name, "key": hf_key}}
    assert refs["WANDB"] == {"secretKeyRef": {"name": name, "key": wandb_key}}
    assert not {"HF", "WANDB"} & {v["name"] for v in container["env"] if "value" in v}
