"""`trainport.RunSpec`: loading YAML or dicts, dotted overrides, loose client-side checks."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainport

RUN_YAML = """\
name: bert-base
recipe: finetune-bert
parameters:
  lr: 0.001
  epochs: 3
compute:
  nodes: 1
  gpus_per_node: 8
labels:
  team: nlp
future_field: kept
"""


def test_a_yaml_file_loads_into_a_spec_with_only_its_fields(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(RUN_YAML)
    spec = trainport.RunSpec.from_yaml(path)
    assert spec.recipe == "finetune-bert"
    assert spec.to_dict() == {
        "name": "bert-base",
        "recipe": "finetune-bert",
        "parameters": {"lr": 0.001, "epochs": 3},
        "compute": {"nodes": 1, "gpus_per_node": 8},
        "labels": {"team": "nlp"},
        "future_field": "kept",
    }


def test_overrides_set_dotted_paths_and_leave_the_original_alone() -> None:
    spec = trainport.RunSpec.from_dict({"recipe": "r", "parameters": {"lr": 0.1}})
    changed = spec.with_overrides(
        {"parameters.lr": 3e-4, "compute.nodes": 2, "scheduling.priority": "high"}
    )
    assert changed.to_dict() == {
        "recipe": "r",
        "parameters": {"lr": 3e-4},
        "compute": {"nodes": 2},
        "scheduling": {"priority": "high"},
    }
    assert spec.to_dict() == {"recipe": "r", "parameters": {"lr": 0.1}}


def test_label_and_env_overrides_keep_dots_in_their_keys() -> None:
    spec = trainport.RunSpec.from_dict({"recipe": "r"}).with_overrides(
        {"labels.example.com/team": "nlp", "env.HF.HOME": "/cache"}
    )
    assert spec.labels == {"example.com/team": "nlp"}
    assert spec.env == {"HF.HOME": "/cache"}


def test_an_override_through_a_scalar_is_refused() -> None:
    spec = trainport.RunSpec.from_dict({"recipe": "r", "parameters": {"lr": 0.1}})
    with pytest.raises(trainport.SpecError, match=r"parameters\.lr is not a mapping"):
        spec.with_overrides({"parameters.lr.x": 1})
    with pytest.raises(trainport.SpecError, match="dotted field names"):
        spec.with_overrides({"parameters..lr": 1})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"image": "x"}, "give `command`"),
        ({"image": "x", "command": "python train.py"}, "exec form"),
        ({"recipe": "r", "compute": "big"}, "compute"),
    ],
)
def test_obviously_wrong_specs_fail_before_any_request(
    document: dict[str, object], message: str
) -> None:
    with pytest.raises(trainport.SpecError, match=message):
        trainport.RunSpec.from_dict(document)


def test_unreadable_or_non_mapping_yaml_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(trainport.SpecError, match="Cannot read"):
        trainport.RunSpec.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(trainport.SpecError, match="not valid YAML"):
        trainport.RunSpec.from_yaml_string("a: [b", source="run.yaml")
    with pytest.raises(trainport.SpecError, match="mapping of run fields"):
        trainport.RunSpec.from_yaml_string("- just\n- a list\n")


def test_env_values_and_labels_written_as_numbers_are_sent_as_text() -> None:
    spec = trainport.RunSpec.from_yaml_string(
        "command: [python]\nenv: {STEPS: 100, LR: 0.5, DEBUG: true, KEY: {secret: wandb}}\n"
        "labels: {round: 3}\n"
    )
    assert spec.to_dict()["env"] == {
        "STEPS": "100", "LR": "0.5", "DEBUG": "true", "KEY": {"secret": "wandb"},
    }  # fmt: skip
    assert spec.to_dict()["labels"] == {"round": "3"}
    assert spec.with_overrides({"env.STEPS": 200}).to_dict()["env"]["STEPS"] == "200"
