"""The `trainport` command as users run it: the console script installed beside this Python,
in a subprocess with the environment a test gives it, and the run file the CLI tests submit.

The environment itself is tests/sdk/conftest.py's `cli_env` fixture (the live API, a fresh
tenant's key, an empty config file), with `run_file` (RUN_YAML written to a file).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TRAINPORT = Path(sys.executable).with_name("trainport")
RUN_YAML = """\
image: python:3.11-slim
command: ["python", "-c", "print('hi')"]
labels:
  team: cli
"""


def trainport_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TRAINPORT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
