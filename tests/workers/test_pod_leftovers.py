"""What a pod leaves is kept on Kubernetes too (issue 14): the trainer container's command, as
the executor renders it, runs here as the kubelet would run it (`$$` → `$`), against the API
on S3 (moto, real HTTP) with the run's token only. The wrapper (core/outputs/pod_upload.py)
runs the user's command, keeps its exit status and SIGTERM handling, and uploads its outputs,
TensorBoard event files and loose checkpoint files through presigned URLs; the settling
worker's step (workers/pod_leftovers.py) then records them as the local executor's harvest
does, and the series appear in the metrics API."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker, app_settings
from core.kubernetes.config import ClusterConfig
from core.kubernetes.manifests import CHECKPOINT_DIR, build_attempt
from core.run_storage.service import leftovers_location
from tests.factories import Tenant, app_of, make_tenant
from tests.security.storage_fixtures import (
    PLATFORM_CREDENTIALS,
    live_storage_api,
    storage_api,
    storage_app,
)
from tests.support.kubernetes import launch_request
from tests.support.training import Started, start, submit
from workers.pod_leftovers import keep_uploaded

__all__ = ["live_storage_api", "storage_api", "storage_app"]
PY = sys.executable
TRAINER = textwrap.dedent("""\
    import os, pathlib, sys, time
    from torch.utils.tensorboard import SummaryWriter
    out = pathlib.Path("out"); (out / "sub").mkdir(parents=True)
    (out / "model.bin").write_bytes(b"weights" * 1000)
    (out / "sub" / "notes.txt").write_text("kept")
    os.symlink("/etc/hostname", out / "leak")  # a link: never followed, never uploaded
    pathlib.Path("scratch.tmp").write_text("not an output")
    writer = SummaryWriter("tb")
    for step in range(5):
        writer.add_scalar("train/loss", 2.0 / (step + 1), step)
    writer.close()
    folder = pathlib.Path(os.environ["TRAINPORT_CHECKPOINT_DIR"])
    (folder / "ckpt.pt").write_bytes(b"checkpoint")
    print("ready", flush=True)
    if sys.argv[1] == "wait":
        time.sleep(120)
    sys.exit(int(sys.argv[1]))
    """)


def _pod(started: Started, spec: dict[str, Any], argument: str) -> tuple[list[str], dict[str, str]]:
    """The trainer container's command and plain env, as the executor renders them."""
    request = launch_request(nodes=1, command=[PY, "-c", TRAINER, argument], **spec)
    request = dataclasses.replace(request, run_id=started.run_id, env=started.env)
    config = ClusterConfig(default_image="trainer:1", checkpoint_claim="checkpoints")
    pod = build_attempt(request, config).job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e["value"].replace("$$", "$") for e in container["env"] if "value" in e}
    command = [part.replace("$$", "$") for part in container["command"]]
    return command, env


def _run_pod(
    storage_api: TestClient, live: str, tmp_path: Path, argument: str
) -> tuple[Tenant, Started, subprocess.Popen[str]]:
    tenant = make_tenant(storage_api)
    spec = {"outputs": ["out/**"], "metrics": {"tensorboard_dir": "tb"}}
    started = start(storage_api, submit(storage_api, tenant, **spec))
    command, env = _pod(started, spec, argument)
    assert command[:2] == ["python3", "-c"], command  # the wrapper, then the user's command
    (tmp_path / "work").mkdir()
    (tmp_path / "ckpt").mkdir()
    env |= {"PATH": os.environ["PATH"], "TRAINPORT_API_URL": live, "PYTHONFAULTHANDLER": "1"}
    assert env["TRAINPORT_CHECKPOINT_DIR"] == CHECKPOINT_DIR
    env["TRAINPORT_CHECKPOINT_DIR"] = str(tmp_path / "ckpt")  # the volume, here
    for value in PLATFORM_CREDENTIALS.values():
        assert value not in str(command) + str(env)
    process = subprocess.Popen(
        [PY, *command[1:]],
        cwd=tmp_path / "work",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return tenant, started, process


def _keep(storage_api: TestClient, started: Started) -> None:
    app = app_of(storage_api)
    keep_uploaded(app_sessionmaker(app), app_settings(app), started.run_id, started.attempt)


def test_the_pod_uploads_what_it_leaves_and_keeps_the_commands_exit_code(
    storage_api: TestClient, live_storage_api: str, tmp_path: Path
) -> None:
    tenant, started, process = _run_pod(storage_api, live_storage_api, tmp_path, "3")
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired as late:  # show where it hangs (PYTHONFAULTHANDLER)
        process.send_signal(signal.SIGABRT)
        output, _ = process.communicate(timeout=30)
        raise AssertionError(output) from late
    assert process.returncode == 3, output  # the command's, not the wrapper's
    assert "uploaded" in output, output

    _keep(storage_api, started)
    run_id = started.run_id
    listing = storage_api.get(f"/v1/runs/{run_id}/outputs", headers=tenant.headers).json()
    kept = {f["path"]: f for f in listing["data"]}
    assert set(kept) == {"out/model.bin", "out/sub/notes.txt"}
    model = (tmp_path / "work" / "out" / "model.bin").read_bytes()
    assert kept["out/model.bin"]["sha256"] == hashlib.sha256(model).hexdigest()

    checkpoints = storage_api.get(f"/v1/runs/{run_id}/checkpoints", headers=tenant.headers).json()
    assert [{f["path"] for f in c["files"]} for c in checkpoints] == [{"ckpt.pt"}]

    series = storage_api.get(
        f"/v1/runs/{run_id}/metrics", params={"name": "train/loss"}, headers=tenant.headers
    ).json()["series"]["train/loss"]
    assert series["steps"] == [0, 1, 2, 3, 4]
    assert series["values"][0] == 2.0

    app = app_of(storage_api)
    store = leftovers_location(app_settings(app), tenant.org_id, run_id, started.attempt)
    assert store.list() == []  # the uploaded copies are gone once kept


def test_a_cancelled_pods_trainer_gets_the_sigterm_and_its_files_are_still_uploaded(
    storage_api: TestClient, live_storage_api: str, tmp_path: Path
) -> None:
    tenant, started, process = _run_pod(storage_api, live_storage_api, tmp_path, "wait")
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while process.stdout.readline().strip() != "ready":  # bounded by the subprocess's output
        assert time.monotonic() < deadline
    process.send_signal(signal.SIGTERM)  # what the kubelet sends PID 1 on a cancel
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output  # as the runtime reports it
    _keep(storage_api, started)
    listing = storage_api.get(f"/v1/runs/{started.run_id}/outputs", headers=tenant.headers).json()
    assert {f["path"] for f in listing["data"]} == {"out/model.bin", "out/sub/notes.txt"}


def test_a_command_that_is_not_there_exits_127_as_from_a_shell(
    storage_api: TestClient, live_storage_api: str, tmp_path: Path
) -> None:
    tenant = make_tenant(storage_api)
    outputs = ["out/**"]
    started = start(storage_api, submit(storage_api, tenant, outputs=outputs))
    request = launch_request(nodes=1, command=["/no/such/trainer"], outputs=outputs)
    request = dataclasses.replace(request, run_id=started.run_id, env=started.env)
    pod = build_attempt(request, ClusterConfig(default_image="t:1")).job
    [container] = pod["spec"]["template"]["spec"]["containers"]
    env = {"PATH": os.environ["PATH"], **started.env, "TRAINPORT_API_URL": live_storage_api}
    env |= {e["name"]: e["value"] for e in container["env"] if e["name"] == "TRAINPORT_OUTPUTS"}
    command = [part.replace("$$", "$") for part in container["command"]]
    done = subprocess.run(
        [PY, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 127, done.stderr  # the podFailurePolicy's "never succeeds"


def test_leftovers_are_write_only_and_an_api_key_cannot_write_them(
    storage_api: TestClient,
) -> None:
    tenant = make_tenant(storage_api)
    started = start(storage_api, submit(storage_api, tenant, outputs=["out/**"]))
    url = f"/v1/runs/{started.run_id}/storage/presign"

    def presign(method: str, headers: dict[str, str]) -> Any:
        body = {"operations": [{"method": method, "key": "leftovers/outputs/out/a.bin"}]}
        return storage_api.post(url, json=body, headers=headers)

    assert presign("PUT", started.headers).status_code == 200
    refused = presign("GET", started.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "write_only"
    assert presign("DELETE", started.headers).status_code == 403
    assert presign("PUT", tenant.headers).status_code == 403  # people never write a pod's files
    listing = storage_api.get(
        f"/v1/runs/{started.run_id}/storage/objects",
        params={"prefix": "leftovers/"},
        headers=started.headers,
    )
    assert listing.status_code == 403
