"""The deployment files and the docs agree with the code they describe.

No Docker engine or cluster here, so these read the files: compose services, commands, health
checks and env; that both start every Trainport process (API, worker, beat, relay, migration);
every Kubernetes manifest's schema (kubernetes-validate, strict), kind, security context and
probes; the Dockerfile's
user; and that the README documents every setting, run-spec field and route, and the
architecture doc's state diagram is the lifecycle table.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from api.app import create_app
from core.runs.spec import RunCreate
from core.runs.states import TRANSITIONS
from core.settings import Environment, Settings, WorkerPool
from core.storage.backends import check_store_reachable_by_runs

ROOT = Path(__file__).resolve().parents[2]
TRAINPORT_SERVICES = ("migrate", "api", "worker", "beat", "relay")
# Every Trainport process the platform needs, by the start of its argv: each must be started by
# docker-compose.yml and by k8s/ (a missing relay still "works", a second slower: issue 13).
PROCESSES = {
    "api": ["uvicorn", "api.main:app"],
    "worker": ["celery", "-A", "workers.celery_app", "worker"],
    "beat": ["celery", "-A", "workers.celery_app", "beat"],
    "relay": ["python", "-m", "workers.relay"],
    "migrate": ["python", "-m", "api.admin", "migrate"],
}
# Options of `celery worker` that would override TRAINPORT_WORKER_POOL / _CONCURRENCY.
POOL_OPTIONS = ("-P", "--pool", "-c", "--concurrency")
# The Kubernetes versions the README supports (tests/k8s/test_manifests.py checks the same).
SUPPORTED_VERSIONS = ("1.31.0", "1.37.0")
NAMESPACES = {"trainport", "trainport-runs"}
POD_OWNERS = {"Deployment", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def _manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((ROOT / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in _manifests() if m["kind"] == kind}


def _settings_from(env: dict[str, str]) -> Settings:
    """Settings as a process with exactly this environment reads them (JSON values parsed)."""
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings()


def _expand(value: str) -> str:
    """Compose's `${VAR:-default}` with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


# docker-compose.yml


def test_compose_has_the_production_shaped_services() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", *TRAINPORT_SERVICES}


def test_compose_health_checks_cover_postgres_redis_and_the_api() -> None:
    services = _compose()["services"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "urllib.request" in api_check
    assert "/readyz" in api_check


def test_compose_postgres_plans_for_ssd_storage() -> None:
    command = _compose()["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    assert "random_page_cost=1.1" in command


def test_compose_migrates_once_before_anything_else_starts() -> None:
    services = _compose()["services"]
    assert services["migrate"]["command"] == ["python", "-m", "api.admin", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker", "beat", "relay"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_compose_commands_run_the_api_and_both_celery_processes() -> None:
    services = _compose()["services"]
    assert services["api"]["command"][:2] == ["uvicorn", "api.main:app"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "workers.celery_app", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "workers.celery_app", "beat"]
    for module in ("api.main", "api.admin", "workers.celery_app"):
        assert importlib.util.find_spec(module) is not None, module


def _pool_options(command: list[str]) -> list[str]:
    return [part for part in command if part.split("=")[0] in POOL_OPTIONS]


def test_the_compose_and_kubernetes_workers_run_threads_as_their_settings_say() -> None:
    """Neither worker's command names a pool or a size, so the settings decide, and in both the
    pool is threads (one process; prefork holds ~100 MB per child): the same four tasks at once."""
    compose = _compose()
    compose_env = {k: _expand(str(v)) for k, v in compose["x-trainport"]["environment"].items()}
    worker = _of_kind("Deployment")["trainport-worker"]["spec"]["template"]["spec"]
    k8s_env = {
        **_of_kind("ConfigMap")["trainport-config"]["data"],
        **_of_kind("Secret")["trainport-secrets"]["stringData"],
    }
    chosen = []
    for command, env in (
        (compose["services"]["worker"]["command"], compose_env),
        (worker["containers"][0]["command"], k8s_env),
    ):
        assert _pool_options(command) == [], command
        settings = _settings_from(env)
        chosen.append((settings.worker_pool, settings.worker_concurrency))
    assert chosen == [(WorkerPool.THREADS, 4)] * 2


def _starts(commands: list[list[str]], prefix: list[str]) -> bool:
    return any(command[: len(prefix)] == prefix for command in commands)


def test_compose_starts_every_trainport_process() -> None:
    compose = _compose()
    image = compose["x-trainport"]["image"]
    commands = [
        service["command"] for service in compose["services"].values() if service["image"] == image
    ]
    for process, prefix in PROCESSES.items():
        assert _starts(commands, prefix), f"docker-compose.yml starts no {process}: {prefix}"
    assert compose["services"]["relay"]["restart"] == "unless-stopped"
    assert importlib.util.find_spec("workers.relay") is not None


def test_compose_environment_is_valid_production_settings() -> None:
    services = _compose()["services"]
    for name in TRAINPORT_SERVICES:
        env = {k: _expand(str(v)) for k, v in services[name]["environment"].items()}
        assert env["TRAINPORT_BROKER_URL"] == "redis://redis:6379/0"
        assert env["TRAINPORT_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["TRAINPORT_DATABASE_URL"]
        settings = _settings_from(env)  # unknown names would be typos: Settings ignores them
        assert set(env) <= {f"TRAINPORT_{f.upper()}" for f in Settings.model_fields}
        assert settings.environment is Environment.PRODUCTION
        assert services[name]["image"] == services["api"]["image"]


def test_compose_api_and_worker_share_the_state_volume() -> None:
    compose = _compose()
    for name in ("api", "worker"):
        assert "state:/var/lib/trainport" in compose["services"][name]["volumes"], name
    assert "state" in compose["volumes"]


# Dockerfile


def test_the_image_runs_as_a_non_root_user_and_serves_the_api() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [ln.split(None, 1)[1] for ln in lines if ln.startswith("USER ")]
    assert users, "the Dockerfile sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert [ln for ln in lines if ln.startswith("FROM ")] == ["FROM python:3.11-slim"]
    cmd = [ln for ln in lines if ln.startswith("CMD ")][-1]
    assert all(part in cmd for part in ('"uvicorn"', '"api.main:app"', '"0.0.0.0"', '"8000"'))


def test_everything_the_dockerfile_copies_exists_and_is_not_ignored() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
                assert source not in ignored or f"!{source}" in ignored, source


# k8s/


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((ROOT / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (ROOT / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_manifests_have_the_expected_kinds_in_our_namespaces() -> None:
    kinds = [m["kind"] for m in _manifests()]
    for kind in ("Namespace", "ConfigMap", "Secret", "Job", "Deployment", "Service"):
        assert kind in kinds
    assert set(_of_kind("Namespace")) == NAMESPACES
    assert set(_of_kind("Deployment")) == {
        "trainport-api",
        "trainport-worker",
        "trainport-beat",
        "trainport-relay",
    }
    for manifest in _manifests():
        if manifest["kind"] not in CLUSTER_SCOPED:
            assert manifest["metadata"]["namespace"] in NAMESPACES, manifest["metadata"]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_manifest_is_valid_for_the_supported_kubernetes_versions(version: str) -> None:
    for manifest in _manifests():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_kubernetes_starts_every_trainport_process() -> None:
    commands = [c["command"] for _, pod in _pod_specs() for c in pod["containers"]]
    for process, prefix in PROCESSES.items():
        assert _starts(commands, prefix), f"k8s/ starts no {process}: {prefix}"


def test_the_relay_is_probed_by_its_heartbeat_and_holds_no_cluster_token() -> None:
    relay = _of_kind("Deployment")["trainport-relay"]["spec"]["template"]["spec"]
    assert relay["serviceAccountName"] == "trainport"
    assert relay["automountServiceAccountToken"] is False
    [container] = relay["containers"]
    [flag] = [part for part in container["command"] if part.startswith("--heartbeat-file=")]
    heartbeat = flag.split("=", 1)[1]
    probe = " ".join(container["livenessProbe"]["exec"]["command"])
    assert heartbeat in probe
    # The probe's file lives on a writable mount: the root filesystem is read-only.
    assert any(heartbeat.startswith(m["mountPath"] + "/") for m in container["volumeMounts"])


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["metadata"]["name"], m["spec"]["template"]["spec"])
        for m in _manifests()
        if m["kind"] in POD_OWNERS
    ]


def test_every_pod_is_non_root_with_no_privileges() -> None:
    assert len(_pod_specs()) == 5
    for name, pod in _pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["readOnlyRootFilesystem"] is True, name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name
            declared = {volume["name"] for volume in pod.get("volumes", [])}
            assert {m["name"] for m in container.get("volumeMounts", [])} <= declared, name


def test_pods_take_their_settings_from_the_configmap_and_secret() -> None:
    config_maps, secrets = _of_kind("ConfigMap"), _of_kind("Secret")
    accounts = set(_of_kind("ServiceAccount"))
    for name, pod in _pod_specs():
        assert pod["serviceAccountName"] in accounts, name
        for container in pod["containers"]:
            refs = container["envFrom"]
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= set(
                config_maps
            )
            assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} <= set(secrets)
    env = {**config_maps["trainport-config"]["data"], **secrets["trainport-secrets"]["stringData"]}
    assert set(env) <= {f"TRAINPORT_{f.upper()}" for f in Settings.model_fields}
    assert _settings_from(env).environment is Environment.PRODUCTION


def test_the_api_is_probed_on_healthz_and_readyz_and_exposed_by_its_service() -> None:
    api = _of_kind("Deployment")["trainport-api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"][:2] == ["uvicorn", "api.main:app"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _of_kind("Service")["trainport-api"]
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_the_migration_job_and_celery_deployments_run_the_right_commands() -> None:
    job = _of_kind("Job")["trainport-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == ["python", "-m", "api.admin", "migrate"]
    deployments = _of_kind("Deployment")
    for name, role in (("trainport-worker", "worker"), ("trainport-beat", "beat")):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][:4] == ["celery", "-A", "workers.celery_app", role]
    relay = deployments["trainport-relay"]["spec"]["template"]["spec"]["containers"][0]
    assert relay["command"][:3] == PROCESSES["relay"]
    assert deployments["trainport-beat"]["spec"]["replicas"] == 1
    assert deployments["trainport-beat"]["spec"]["strategy"]["type"] == "Recreate"


def test_only_the_worker_may_manage_jobs_pods_and_services_in_the_training_namespace() -> None:
    role = _of_kind("Role")["trainport-executor"]
    assert role["metadata"]["namespace"] == "trainport-runs"
    granted = {res for rule in role["rules"] for res in rule["resources"]}
    assert {"jobs", "pods", "services"} <= granted
    # The Service's ownerReference blocks its Job's deletion: with
    # OwnerReferencesPermissionEnforcement on (OpenShift's default) that needs this grant.
    finalizers = [r for r in role["rules"] if "jobs/finalizers" in r["resources"]]
    assert finalizers == [
        {"apiGroups": ["batch"], "resources": ["jobs/finalizers"], "verbs": ["update"]}
    ]
    binding = _of_kind("RoleBinding")["trainport-worker-executor"]
    assert binding["roleRef"]["name"] == "trainport-executor"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "trainport-worker", "namespace": "trainport"}
    ]
    worker = _of_kind("Deployment")["trainport-worker"]["spec"]["template"]["spec"]
    assert worker["serviceAccountName"] == "trainport-worker"
    assert _of_kind("ServiceAccount")["trainport"]["automountServiceAccountToken"] is False
    # The one cluster-wide grant: reading nodes, for the executor's inventory.
    (node_reader,) = _of_kind("ClusterRole").values()
    assert node_reader["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
    ]
    (node_binding,) = _of_kind("ClusterRoleBinding").values()
    assert node_binding["subjects"] == binding["subjects"]


TRAINING_PODS = {"matchLabels": {"app.kubernetes.io/managed-by": "trainport"}}
DNS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
TRAINPORT_API = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "trainport"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "trainport-api"}},
        }
    ],
    "ports": [{"protocol": "TCP", "port": 8000}],
}


def test_training_pods_reach_exactly_ranks_dns_the_api_and_the_object_store() -> None:
    """Issue 13: runs reach storage through the API, whose presigned URLs point at the object
    store itself, so pods need the store's endpoint too: that and nothing more. The store's
    address is the operator's (a placeholder to replace, like the Secret's)."""
    policies = _of_kind("NetworkPolicy")
    assert set(policies) == {"default-deny", "training-ranks", "training-object-store"}
    deny = policies["default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ranks = policies["training-ranks"]["spec"]
    assert ranks["podSelector"] == TRAINING_PODS
    assert ranks["ingress"] == [{"from": [{"podSelector": TRAINING_PODS}]}]  # only other ranks
    assert ranks["egress"] == [{"to": [{"podSelector": TRAINING_PODS}]}, DNS, TRAINPORT_API]
    store = policies["training-object-store"]["spec"]
    assert store["podSelector"] == TRAINING_PODS
    assert store["policyTypes"] == ["Egress"]
    [rule] = store["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    [peer] = rule["to"]
    assert set(peer) == {"ipBlock"}
    network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
    assert network.num_addresses == 1  # one endpoint, never "anywhere"
    text = (ROOT / "k8s" / "network-policy.yaml").read_text()
    assert "TRAINPORT_S3_ENDPOINT_URL" in text  # the comment says what to put there


def test_the_shipped_configuration_stores_objects_where_training_pods_reach_them() -> None:
    env = {**_of_kind("ConfigMap")["trainport-config"]["data"],
           **_of_kind("Secret")["trainport-secrets"]["stringData"]}  # fmt: skip
    settings = _settings_from(env)
    assert settings.kubernetes_clusters
    check_store_reachable_by_runs(settings)  # a worker with it starts
    assert settings.storage_backend.value == "s3"
    assert settings.s3_bucket
    assert settings.s3_endpoint_url


# README.md and docs/architecture.md


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_quick_start_is_make_demo_and_make_test(readme: str) -> None:
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick_start
    assert "make test" in quick_start


def test_the_readme_documents_every_setting(readme: str) -> None:
    for field in Settings.model_fields:
        assert f"`TRAINPORT_{field.upper()}`" in readme, field


def _spec_field_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        names.append(prefix + name)
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names += _spec_field_names(nested, f"{prefix}{name}.")
    return names


def test_the_readme_documents_every_run_spec_field(readme: str) -> None:
    names = _spec_field_names(RunCreate)
    assert "compute.gpus_per_node" in names
    for name in names:
        assert f"| `{name}`" in readme, name


def test_the_readme_documents_every_route(readme: str) -> None:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    paths = app.openapi()["paths"]
    assert "/v1/runs" in paths
    for path, operations in paths.items():
        for method in operations:
            assert f"`{method.upper()} {path}`" in readme, (method, path)


def test_the_architecture_state_diagram_is_the_transition_table() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    diagram = text.split("```mermaid\nstateDiagram-v2", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*(\w+) --> (\w+)", diagram, flags=re.MULTILINE))
    table = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert drawn == table


SIGNING_SECRET = "trainport-signing-keys"


def _mounts_secret(pod: dict[str, Any], secret: str) -> bool:
    return any((v.get("secret") or {}).get("secretName") == secret for v in pod.get("volumes", []))


def test_only_the_api_holds_the_provenance_signing_key() -> None:
    """Only the API signs provenance (workers freeze unsigned facts): the key's Secret is
    mounted into the API, read-only, and named by the API's own environment only."""
    holders = [name for name, pod in _pod_specs() if _mounts_secret(pod, SIGNING_SECRET)]
    assert holders == ["trainport-api"]
    api = dict(_pod_specs())["trainport-api"]
    [volume] = [v for v in api["volumes"] if (v.get("secret") or {}).get("secretName")]
    assert volume["secret"]["defaultMode"] == 0o440
    assert api["securityContext"]["fsGroup"] == api["securityContext"]["runAsGroup"]
    [container] = api["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = _settings_from(env)
    assert settings.signing_key_file is not None
    assert settings.signing_key_file.parent.as_posix() == mount["mountPath"]
    assert [p.as_posix() for p in settings.verification_key_files] == [mount["mountPath"]]
    shared = {**_of_kind("ConfigMap")["trainport-config"]["data"],
              **_of_kind("Secret")["trainport-secrets"]["stringData"]}  # fmt: skip
    assert "TRAINPORT_SIGNING_KEY_FILE" not in shared
    assert SIGNING_SECRET not in _of_kind("Secret")  # made by `api.admin keys rotate`, not shipped
