"""`run.should_stop()` on SIGTERM, and how the runtime reads its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.sdk.runtime.stand_ins import MakeRun
from trainport.runtime import Run, RunEnvironment, RuntimeConfigError


def test_should_stop_turns_true_on_sigterm(make_run: MakeRun) -> None:
    before = signal.getsignal(signal.SIGTERM)
    run: Run = make_run(None)
    assert not run.should_stop()
    os.kill(os.getpid(), signal.SIGTERM)
    assert run.should_stop()
    run.close()
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


def test_a_training_loop_saves_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        import trainport.runtime
        run = trainport.runtime.init()
        run.should_stop()  # the first poll turns SIGTERM into the flag (issue 14)
        print("ready", flush=True)
        step = 0
        while not run.should_stop():
            step += 1
            time.sleep(0.001)
        run.checkpoints.save({"step": step}, step=step)
        print("saved", step, flush=True)
        """
    )
    env = {**os.environ, "TRAINPORT_CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    env.pop("TRAINPORT_RUN_ID", None)
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert out.startswith("saved")
    assert any((tmp_path / "ckpt").glob("step-*/COMMIT"))


@pytest.mark.parametrize(
    ("options", "polls", "ends_by"),
    [("", False, -signal.SIGTERM), ("handle_sigterm=True", False, 0), ("", True, 0)],
)
def test_sigterm_keeps_its_default_until_the_code_asks_to_stop_gracefully(
    tmp_path: Path, options: str, polls: bool, ends_by: int
) -> None:
    """Three runtime lines added to a script that never polls must not turn a cancel into a
    SIGKILL after the grace period: SIGTERM ends it as before, unless it asked."""
    script = textwrap.dedent(
        f"""
        import sys, time
        import trainport.runtime
        run = trainport.runtime.init({options})
        {"run.should_stop()" if polls else "pass"}
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not run._stop.is_set():  # no poll: no install
            time.sleep(0.01)
        """
    )
    env = {**os.environ, "TRAINPORT_CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    env.pop("TRAINPORT_RUN_ID", None)
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=60)
    assert child.returncode == ends_by


def test_the_platform_environment_is_read() -> None:
    env = RunEnvironment.from_env(
        {
            "TRAINPORT_RUN_ID": "run_1",
            "TRAINPORT_API_URL": "http://api:8000/",
            "TRAINPORT_ATTEMPT": "2",
            "TRAINPORT_RUN_TOKEN": "tpr_x",
            "TRAINPORT_CHECKPOINT_URI": "s3://bucket/org/run_1",
            "TRAINPORT_DATASETS": '{"text": {"digest": "sha256:ab", "uri": "file:///d/"}}',
            "TRAINPORT_CACHE_DIR": "/cache",
            "RANK": "1",
            "WORLD_SIZE": "2",
        }
    )
    assert env.online
    assert env.api_url == "http://api:8000"
    assert env.attempt == 2
    assert env.checkpoint_uri == "s3://bucket/org/run_1/"
    assert env.datasets["text"].digest == "sha256:ab"
    assert env.cache_dir == Path("/cache")
    assert env.rank == 1
    assert not env.is_main


def test_the_older_checkpoint_dir_variable_still_works(tmp_path: Path) -> None:
    env = RunEnvironment.from_env({"TRAINPORT_CHECKPOINT_DIR": str(tmp_path)})
    assert env.checkpoint_uri == tmp_path.as_uri() + "/"
    assert not env.online


@pytest.mark.parametrize(
    "variables",
    [
        {"TRAINPORT_DATASETS": "[1]"},
        {"TRAINPORT_DATASETS": '{"a": {"digest": "sha256:ab"}}'},
        {"TRAINPORT_CHECKPOINT_URI": "gs://bucket/"},
        {"RANK": "one"},
    ],
)
def test_variables_that_make_no_sense_are_refused(variables: dict[str, str]) -> None:
    with pytest.raises(RuntimeConfigError):
        RunEnvironment.from_env(variables)


def test_the_runtime_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; import trainport.runtime as r; "
        "run = r.init(); run.log(step=1, loss=1.0); run.close(); print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr
