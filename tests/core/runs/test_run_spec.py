"""The run spec's validation rules, table by table: what is accepted and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.runs.spec import RunCreate, RunSpec, parse_duration, quantity_value

BASE: dict[str, Any] = {"image": "python:3.11-slim", "command": ["python", "train.py"]}


def spec(**fields: Any) -> RunSpec:
    return RunSpec.model_validate({**BASE, **fields})


def refused(**fields: Any) -> str:
    """The validation message for a spec that must not pass."""
    with pytest.raises(ValidationError) as caught:
        RunSpec.model_validate({**BASE, **fields})
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("4", 4), ("500m", 0.5), ("16Gi", 16 * 2**30), ("1.5", 1.5), (".5", 0.5), ("2k", 2000),
     ("1e3", 1000), ("3M", 3e6)],
)  # fmt: skip
def test_kubernetes_quantities_have_their_numeric_value(text: str, value: float) -> None:
    assert quantity_value(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "16GB", "-1", "1.2.3", "Gi", "4 Gi", "1e100"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity_value(text)


@pytest.mark.parametrize(
    "compute",
    [{"cpus": "500m"}, {"cpus": 8}, {"cpus": "1024"}, {"memory": "64Gi"}, {"memory": "16Ti"},
     {"nodes": 512, "gpus_per_node": 16}, {"gpus_per_node": 0}, {"gpu_type": "a100-80gb"}],
)  # fmt: skip
def test_compute_within_bounds_is_accepted(compute: dict[str, Any]) -> None:
    assert spec(compute=compute).compute.model_fields_set == set(compute)


@pytest.mark.parametrize(
    ("compute", "field"),
    [({"cpus": "0"}, "cpus"), ({"cpus": "1025"}, "cpus"), ({"cpus": "lots"}, "cpus"),
     ({"memory": "17Ti"}, "memory"), ({"memory": "0Gi"}, "memory"), ({"nodes": 0}, "nodes"),
     ({"nodes": 10**9}, "nodes"), ({"gpus_per_node": 17}, "gpus_per_node"),
     ({"gpus_per_node": -1}, "gpus_per_node"), ({"gpu_type": "a100 80gb"}, "gpu_type"),
     ({"disk": "10Gi"}, "disk")],
)  # fmt: skip
def test_compute_out_of_bounds_is_refused_at_the_field(compute: dict[str, Any], field: str) -> None:
    assert f"compute.{field}" in refused(compute=compute)


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("12h", 43200), ("90m", 5400), ("30s", 30), ("2d", 172800), (3600, 3600), (" 5m ", 300),
     ("30d", 30 * 86400)],
)  # fmt: skip
def test_durations_parse_to_seconds(given: str | int, seconds: int) -> None:
    assert parse_duration(given) == seconds
    assert spec(scheduling={"max_duration": given}).scheduling.max_duration == seconds


@pytest.mark.parametrize("given", ["0s", 0, -5, "-5m", "1w", "12 hours", "31d", True, 1.5, None])
def test_bad_durations_are_refused(given: Any) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_duration(given)


@pytest.mark.parametrize(
    "labels",
    [{"team": "ml"}, {"example.com/team": "a_b.c"}, {"k": ""}, {"A-1.b_2": "Z9"},
     {f"k{i}": "v" for i in range(64)}],
)  # fmt: skip
def test_kubernetes_style_labels_are_accepted(labels: dict[str, str]) -> None:
    assert spec(labels=labels).labels == labels


@pytest.mark.parametrize(
    ("labels", "why"),
    [({"trainport.dev/owner": "x"}, "reserved"), ({"-team": "x"}, "name must be"),
     ({"a" * 64: "x"}, "name must be"), ({"Bad_Prefix/x": "y"}, "DNS subdomain"),
     ({"team": "a" * 64}, "at most 63"), ({"team": "has space"}, "value must be"),
     ({"team": "-x"}, "value must be"), ({f"k{i}": "v" for i in range(65)}, "at most 64")],
)  # fmt: skip
def test_labels_breaking_kubernetes_rules_are_refused(labels: dict[str, str], why: str) -> None:
    assert why in refused(labels=labels)


@pytest.mark.parametrize(
    "env",
    [{"FOO": "bar"}, {"_x1": ""}, {"HF_TOKEN": {"secret": "hf-token"}}, {"lower_case": "ok"}],
)
def test_env_names_and_secret_references_are_accepted(env: dict[str, Any]) -> None:
    assert spec(env=env).model_dump(mode="json")["env"] == env


@pytest.mark.parametrize(
    ("env", "why"),
    [({"1FOO": "x"}, "must match"), ({"FOO-BAR": "x"}, "must match"), ({"": "x"}, "must match"),
     ({"TRAINPORT_TOKEN": "x"}, "reserved"), ({"KUBERNETES_SERVICE_HOST": "x"}, "reserved"),
     ({"RANK": "0"}, "reserved"), ({"WORLD_SIZE": "2"}, "reserved"),
     ({"TOKEN": {"secret": "a b"}}, "pattern"), ({"TOKEN": {"value": "x"}}, "secret")],
)  # fmt: skip
def test_bad_or_reserved_env_names_are_refused(env: dict[str, Any], why: str) -> None:
    assert why in refused(env=env)


@pytest.mark.parametrize(
    "document",
    [BASE, {"recipe": "lm"}, {"recipe": "lm", "parameters": {"lr": 1e-4}}],
)
def test_a_run_is_either_a_command_or_a_recipe(document: dict[str, Any]) -> None:
    RunSpec.model_validate(document)


@pytest.mark.parametrize(
    ("document", "why"),
    [({"image": "x"}, "exactly one"), ({**BASE, "recipe": "lm"}, "exactly one"),
     ({**BASE, "parameters": {"lr": 1}}, "go with a `recipe`"),
     ({"image": "x", "command": "python train.py"}, "valid list"),
     ({"image": "x", "command": []}, "at least 1"), ({"recipe": ""}, "at least 1"),
     ({"recipe": "llama"}, "unknown recipe 'llama'; built-in recipes: lm")],
)  # fmt: skip
def test_command_and_recipe_rules_are_enforced(document: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        RunSpec.model_validate(document)


@pytest.mark.parametrize("name", ["a", "my-run", "run-42", "x" * 40])
def test_dns_label_names_are_accepted(name: str) -> None:
    assert spec(name=name).name == name


@pytest.mark.parametrize("name", ["", "My-Run", "my_run", "-run", "run-", "x" * 41, "a.b"])
def test_names_that_are_not_short_dns_labels_are_refused(name: str) -> None:
    assert "name" in refused(name=name)


@pytest.mark.parametrize(
    ("fields", "where"),
    [({"imgae": "typo"}, "imgae"), ({"scheduling": {"priority": "urgent"}}, "priority"),
     ({"scheduling": {"max_retries": 21}}, "max_retries"),
     ({"checkpoint": {"keep_last": 0}}, "keep_last"), ({"data": {"datasets": [""]}}, "datasets")],
)  # fmt: skip
def test_unknown_fields_and_bad_values_point_at_the_field(
    fields: dict[str, Any], where: str
) -> None:
    assert where in refused(**fields)


def test_defaults_fill_an_omitted_section() -> None:
    made = spec()
    assert (made.compute.nodes, made.compute.gpus_per_node) == (1, 0)
    assert (made.scheduling.priority, made.scheduling.max_retries) == ("normal", 0)
    assert (made.env, made.labels, made.name) == ({}, {}, None)


def test_the_create_body_is_a_spec_plus_an_optional_project() -> None:
    body = RunCreate.model_validate({**BASE, "project": "research"})
    assert body.project == "research"
    with pytest.raises(ValidationError, match="project"):
        RunCreate.model_validate({**BASE, "project": "p" * 64})


DIGEST = "sha256:" + "0f" * 32
COMMAND = {"command": ["python", "train.py"]}


@pytest.mark.parametrize(
    "code",
    [
        {"workdir": DIGEST},
        {"workdir": DIGEST, "working_dir": "src/train"},
        {"git": {"url": "https://github.com/acme/t.git", "ref": "release/1.2"}},
        {"git": {"url": "https://x/t.git", "commit": "a" * 40, "password": {"secret": "gh"}}},
    ],
)
def test_code_sources_are_accepted(code: dict[str, Any]) -> None:
    RunSpec.model_validate({**COMMAND, **code})


@pytest.mark.parametrize(
    "code",
    [
        {"workdir": "./project"},  # the CLI and SDK upload a folder; the API takes its digest
        {"workdir": DIGEST, "git": {"url": "https://x/t.git"}},
        {"working_dir": "src"},  # without a code source
        {"workdir": DIGEST, "working_dir": "../elsewhere"},
        {"workdir": DIGEST, "working_dir": "/abs"},
        {"git": {"url": "https://x/t.git", "ref": "--upload-pack=x"}},
        {"git": {"url": "https://x/t.git", "commit": "abc"}},
    ],
)
def test_bad_code_sources_are_refused(code: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RunSpec.model_validate({**COMMAND, **code})
