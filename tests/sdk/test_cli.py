"""The `trainport` command end to end: a subprocess against the live API, exit codes included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

import trainport
from core.log_archive import LogArchive
from tests.factories import Tenant, write_log
from tests.support.cli import RUN_YAML, TRAINPORT, trainport_cli
from tests.support.servers import free_port
from tests.support.training import launch

SPEC = yaml.safe_load(RUN_YAML)


def test_run_submits_the_file_with_overrides(
    cli_env: dict[str, str], run_file: Path, sdk: trainport.Client
) -> None:
    done = trainport_cli(
        cli_env, "run", "-f", str(run_file), "--set", "compute.nodes=2",
        "--set", "labels.team=vision", "--name", "from-cli", "-o", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    stored = sdk.runs.get(run["id"])
    assert (stored.name, stored.labels, stored.spec["compute"]["nodes"]) == (
        "from-cli",
        {"team": "vision"},
        2,
    )


def test_run_plan_shows_what_would_run_and_submits_nothing(
    cli_env: dict[str, str], run_file: Path, sdk: trainport.Client
) -> None:
    before = [r.id for r in sdk.runs.list(limit=200)]
    done = trainport_cli(
        cli_env, "run", "-f", str(run_file), "--plan", "--set", "scheduling.max_duration=1h",
        "-o", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["object"] == "run_plan"
    assert plan["spec"]["scheduling"]["max_duration"] == 3600
    assert plan["spec"]["labels"] == {"team": "cli"}
    assert "reason" in plan["placement"]
    people = trainport_cli(cli_env, "run", "-f", str(run_file), "--plan")
    assert people.returncode == 0, people.stderr
    assert "Nothing was submitted" in people.stdout
    assert [r.id for r in sdk.runs.list(limit=200)] == before


def test_run_clone_copies_a_run_with_set_overrides(
    cli_env: dict[str, str], sdk: trainport.Client
) -> None:
    source = sdk.runs.create(SPEC)
    done = trainport_cli(
        cli_env, "run", "--clone", source.id, "--set", "labels.team=vision",
        "--set", "compute.nodes=2", "-o", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    copy = sdk.runs.get(json.loads(done.stdout)["id"])
    assert copy.cloned_from == source.id
    assert (copy.labels, copy.spec["compute"]["nodes"]) == ({"team": "vision"}, 2)
    neither = trainport_cli(cli_env, "run")
    assert neither.returncode != 0
    assert "--file or --clone" in neither.stderr


def test_run_set_keeps_env_values_and_labels_as_the_text_typed(
    cli_env: dict[str, str], run_file: Path, sdk: trainport.Client
) -> None:
    """Issue 15: `--set env.STEPS=100` was sent as a number and refused."""
    done = trainport_cli(
        cli_env, "run", "-f", str(run_file), "--set", "env.STEPS=100", "--set", "env.LR=1e-3",
        "--set", "labels.round=3", "--set", "compute.nodes=2", "-o", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = sdk.runs.get(json.loads(done.stdout)["id"])
    assert stored.spec["env"] == {"STEPS": "100", "LR": "1e-3"}
    assert (stored.labels["round"], stored.spec["compute"]["nodes"]) == ("3", 2)


def test_runs_are_addressed_by_a_name_only_one_has(
    cli_env: dict[str, str], sdk: trainport.Client
) -> None:
    solo = sdk.runs.create(SPEC, name="solo")
    twins = [sdk.runs.create(SPEC, name="twin") for _ in range(2)]
    got = trainport_cli(cli_env, "runs", "get", "solo", "-o", "json")
    assert (got.returncode, json.loads(got.stdout or "{}").get("id")) == (0, solo.id), got.stderr
    ambiguous = trainport_cli(cli_env, "runs", "describe", "twin")
    assert ambiguous.returncode == 2
    assert all(t.id in ambiguous.stderr for t in twins)
    assert "Traceback" not in ambiguous.stderr
    missing = trainport_cli(cli_env, "cancel", "nobody")
    assert missing.returncode == 3
    assert "No run named 'nobody'" in missing.stderr


def test_runs_ls_prints_json_yaml_and_a_table(
    cli_env: dict[str, str], sdk: trainport.Client
) -> None:
    made = [sdk.runs.create(SPEC) for _ in range(3)]
    sdk.runs.cancel(made[0])
    listed = trainport_cli(cli_env, "runs", "ls", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [r.id for r in reversed(made)]
    cancelled = trainport_cli(cli_env, "runs", "ls", "--status", "cancelled", "-o", "yaml")
    assert [r["id"] for r in yaml.safe_load(cancelled.stdout)] == [made[0].id]
    table = trainport_cli(cli_env, "runs", "ls", "--label", "team=cli", "-n", "2")
    assert table.stdout.splitlines()[0].split() == [
        "ID", "NAME", "STATUS", "REASON", "PRIORITY", "ATTEMPT", "AGE",
    ]  # fmt: skip
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == [
        made[2].id,
        made[1].id,
    ]


def test_describe_shows_status_spec_and_events(
    cli_env: dict[str, str], sdk: trainport.Client
) -> None:
    run = sdk.runs.create(SPEC)
    sdk.runs.cancel(run)
    done = trainport_cli(cli_env, "runs", "describe", run.id)
    assert done.returncode == 0, done.stderr
    for expected in (run.id, "cancelled", "user_cancelled", "team=cli", "Spec", "Events"):
        assert expected in done.stdout
    got = trainport_cli(cli_env, "runs", "get", run.id, "-o", "json")
    assert json.loads(got.stdout)["status"] == "cancelled"


def test_describe_shows_an_attempts_table(
    cli_env: dict[str, str], sdk: trainport.Client, client: TestClient, api_url: str
) -> None:
    run = sdk.runs.create(SPEC)
    launch(client, run.id, api_url)
    done = trainport_cli(cli_env, "runs", "describe", run.id)
    assert done.returncode == 0, done.stderr
    table = done.stdout[done.stdout.index("Attempts") :]
    for expected in ("WHERE", "OUTCOME", "EXIT", "local", "running"):
        assert expected in table


def test_logs_timestamps_print_each_lines_time(
    cli_env: dict[str, str], sdk: trainport.Client, archive: LogArchive
) -> None:
    run = sdk.runs.create(SPEC)
    write_log(archive, run.id, 0, 0, "epoch 1")
    done = trainport_cli(cli_env, "logs", run.id, "--timestamps")
    stamp, _, text = done.stdout.strip().partition(" ")
    assert (done.returncode, text) == (0, "epoch 1")
    assert datetime.fromisoformat(stamp).tzinfo is not None


def test_cancel_and_rm(cli_env: dict[str, str], sdk: trainport.Client) -> None:
    run = sdk.runs.create(SPEC)
    cancelled = trainport_cli(cli_env, "cancel", run.id)
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"{run.id}: cancelled")
    removed = trainport_cli(cli_env, "runs", "rm", run.id)
    assert (removed.returncode, removed.stdout.strip()) == (0, f"{run.id}: deleted")
    with pytest.raises(trainport.NotFound):
        sdk.runs.get(run)


def test_logs_prints_the_run_output(
    cli_env: dict[str, str], sdk: trainport.Client, archive: LogArchive
) -> None:
    run = sdk.runs.create(SPEC)
    write_log(archive, run.id, 0, 0, "epoch 1 loss 0.9", "epoch 2 loss 0.5")
    done = trainport_cli(cli_env, "logs", run.id, "--tail", "1")
    assert (done.returncode, done.stdout) == (0, "epoch 2 loss 0.5\n")
    followed = trainport_cli(cli_env, "logs", run.id, "-f", "--rank", "0", "--attempt", "0")
    assert followed.stdout.splitlines() == ["epoch 1 loss 0.9", "epoch 2 loss 0.5"]


def test_run_follow_exits_1_when_the_run_is_cancelled(
    cli_env: dict[str, str], run_file: Path, sdk: trainport.Client
) -> None:
    follower = subprocess.Popen(
        [str(TRAINPORT), "run", "-f", str(run_file), "--follow"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    run_id = follower.stdout.readline().strip()  # printed as soon as the run is submitted
    assert run_id.startswith("run_")
    sdk.runs.cancel(run_id)
    assert follower.wait(timeout=30) == 1
    assert f"{run_id} cancelled" in (follower.stderr.read() if follower.stderr else "")


@pytest.mark.parametrize(
    ("args", "env_change", "code"),
    [
        (["runs", "ls"], {"TRAINPORT_API_KEY": "tp_" + "x" * 43}, 3),  # bad key: API error
        (["runs", "get", "run_missing"], {}, 3),  # not found: API error
        (["runs", "ls"], {"TRAINPORT_API_URL": "closed"}, 3),  # network error
        (["runs", "ls", "--colour"], {}, 2),  # unknown option: usage
        (["runs", "ls", "--status", "sleeping"], {}, 2),  # bad choice: usage
        (["run"], {}, 2),  # missing --file: usage
        (["runs", "ls"], {"TRAINPORT_API_KEY": ""}, 2),  # no key configured
    ],
)
def test_errors_print_one_line_and_exit_with_the_documented_code(
    cli_env: dict[str, str], args: list[str], env_change: dict[str, str], code: int
) -> None:
    env = {**cli_env, **env_change}
    if env.get("TRAINPORT_API_URL") == "closed":
        env["TRAINPORT_API_URL"] = f"http://127.0.0.1:{free_port()}"
    done = trainport_cli(env, *args)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    if code == 3:
        assert done.stderr.startswith("error: ")
        assert len(done.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback(cli_env: dict[str, str]) -> None:
    done = trainport_cli(cli_env, "--debug", "runs", "get", "run_missing")
    assert done.returncode == 3
    assert "Traceback" in done.stderr
    assert "NotFound" in done.stderr


def test_login_checks_the_key_and_saves_an_active_profile(
    cli_env: dict[str, str], api_url: str, sdk_tenant: Tenant, config_file: Path
) -> None:
    bare = {k: v for k, v in cli_env.items() if k not in {"TRAINPORT_API_URL", "TRAINPORT_API_KEY"}}
    bad = trainport_cli(bare, "login", "--api-url", api_url, "--api-key", "tp_" + "y" * 43)
    assert bad.returncode == 3
    assert not config_file.exists()
    done = trainport_cli(
        bare, "login", "--api-url", api_url, "--api-key", sdk_tenant.key, "--profile", "ci"
    )
    assert done.returncode == 0, done.stderr
    assert "Logged in" in done.stdout
    assert trainport_cli(bare, "runs", "ls", "-o", "json").returncode == 0  # no env needed now
    shown = trainport_cli(bare, "config")
    assert "profile:     ci" in shown.stdout
    assert sdk_tenant.key not in shown.stdout  # masked
    assert trainport_cli(bare, "config", "set", "project", "default").returncode == 0
    assert trainport.Client().config.project == "default"


def test_runs_ls_watch_prints_each_change_until_interrupted(
    cli_env: dict[str, str], sdk: trainport.Client
) -> None:
    first = sdk.runs.create(SPEC)
    watcher = subprocess.Popen(
        [str(TRAINPORT), "runs", "ls", "--watch", "--interval", "0.1", "-o", "json"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    try:
        assert json.loads(watcher.stdout.readline())["id"] == first.id
        sdk.runs.cancel(first)
        change = json.loads(watcher.stdout.readline())
        assert (change["id"], change["status"]) == (first.id, "cancelled")
    finally:
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(timeout=10)
    assert code == 0


@pytest.fixture
def embedded_server(tmp_path: Path, config_file: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`trainport server --bootstrap` on a fresh SQLite database."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env |= {"TRAINPORT_CONFIG": str(config_file), "TRAINPORT_LOG_LEVEL": "WARNING"}
    database = f"sqlite:///{tmp_path / 'embedded.db'}"
    server = subprocess.Popen(
        [str(TRAINPORT), "server", "--port", str(port), "--database-url", database,
         "--state-dir", str(tmp_path / "state"), "--bootstrap", "acme"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a loaded machine takes a while to start it all
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, env
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_server_migrates_bootstraps_and_serves_the_embedded_platform(
    embedded_server: tuple[str, dict[str, str]],
) -> None:
    url, env = embedded_server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    listed = trainport_cli(env, "runs", "ls", "-o", "json")  # the saved `local` profile
    assert (listed.returncode, json.loads(listed.stdout or "null")) == (0, []), listed.stderr


def test_run_follow_of_a_real_run_streams_its_output_and_exits_0(
    embedded_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = embedded_server
    run_yaml = tmp_path / "hello.yaml"
    command = [sys.executable, "-c", "print('hello from a real run')"]
    run_yaml.write_text(yaml.safe_dump({"name": "hello", "command": command}))
    followed = subprocess.run(
        [str(TRAINPORT), "run", "-f", str(run_yaml), "--follow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "hello from a real run" in followed.stdout


TINY_LM = {
    "d_model": 32, "n_layers": 1, "n_heads": 2, "context": 32, "batch": 4, "steps": 20,
    "warmup": 2, "eval_every": 10, "eval_batches": 1, "checkpoint_every": 10,
    "sample_tokens": 0, "threads": 1,
}  # fmt: skip


@pytest.mark.timeout(300)  # a whole platform, a dataset, a training run and torch imports
def test_sample_writes_text_from_a_real_lm_runs_checkpoint(
    embedded_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """Issue 15: a trained `lm` model is used with `trainport sample`, no recipe internals."""
    _, env = embedded_server
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for source in sorted((Path(json.__file__).parent).glob("*.py")):
        (corpus / source.name).write_bytes(source.read_bytes())
    pushed = trainport_cli(env, "datasets", "push", str(corpus), "--name", "code")
    assert pushed.returncode == 0, pushed.stderr
    spec = {"name": "tiny-lm", "recipe": "lm", "parameters": TINY_LM,
            "data": {"datasets": ["code"]}, "compute": {"processes": 1}}  # fmt: skip
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(spec))
    followed = subprocess.run(
        [str(TRAINPORT), "run", "-f", str(tmp_path / "lm.yaml"), "--follow"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "weights checksum" not in followed.stdout  # one rank: no checksum line

    newest = trainport_cli(env, "sample", "tiny-lm", "--prompt", "def ", "--tokens", "40")
    assert newest.returncode == 0, newest.stderr
    assert newest.stdout.startswith("def ")
    assert len(newest.stdout.rstrip("\n")) > len("def ")
    older = trainport_cli(env, "sample", "tiny-lm", "--checkpoint", "10", "--prompt", "def ")
    assert older.returncode == 0, older.stderr
    missing = trainport_cli(env, "sample", "tiny-lm", "--checkpoint", "7")
    assert missing.returncode == 3
    assert "steps 20, 10" in missing.stderr
