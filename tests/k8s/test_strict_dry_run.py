"""The live tests' strict dry run (strict_dry_run.py), proven on the fake API server: a server
that drops a field fails it whether or not it knows `fieldValidation`."""

from __future__ import annotations

from core.kubernetes.config import cluster_config
from core.kubernetes.manifests import AttemptManifests, build_attempt
from core.settings import Settings
from tests.k8s.fake_api import FakeApiServer
from tests.k8s.strict_dry_run import dropped_fields, dry_run_attempt, strict_options
from tests.support.kubernetes import NAMESPACE, launch_request, make_apis


def _built() -> AttemptManifests:
    config = cluster_config(
        Settings(kubernetes_namespace=NAMESPACE, kubernetes_default_image="python:3.11-slim")
    )
    return build_attempt(launch_request(nodes=2), config)


def test_a_current_server_is_asked_for_strict_validation_and_keeps_every_field(
    server: FakeApiServer,
) -> None:
    apis = make_apis(server.url)
    assert strict_options(apis) == {"dry_run": "All", "field_validation": "Strict"}
    assert dry_run_attempt(apis, _built()) == []
    assert server.store.requests["POST jobs"] == 1
    assert not server.store.objects  # a dry run stores nothing


def test_a_1_20_server_is_not_sent_field_validation_and_its_dropped_fields_fail(
    server: FakeApiServer,
) -> None:
    server.pretend_version("v1.20.2")
    apis = make_apis(server.url)
    assert strict_options(apis) == {"dry_run": "All"}
    dropped = dry_run_attempt(apis, _built())
    assert dropped == [
        "Job: spec.completionMode",
        "Job: spec.podFailurePolicy",
        "Job: spec.podReplacementPolicy",
    ]


def test_dropped_fields_are_paths_into_what_was_sent() -> None:
    sent = {"spec": {"a": 1, "b": None, "list": [{"x": 1}, {"y": 2}]}, "kind": "Job"}
    kept = {"spec": {"a": 2, "list": [{"x": 1, "z": 0}]}, "kind": "Job", "status": {}}
    assert dropped_fields(sent, kept) == ["spec.list[1]"]
    assert dropped_fields(sent, {"kind": "Job"}) == ["spec"]
