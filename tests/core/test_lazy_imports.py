"""What every process imports at start-up stays lean (issue 17: idle memory, start-up time).

boto3 and botocore cost ~24 MB and a few hundred ms in each of the API, the workers, beat and
the relay; only a store on S3 needs them, so they load on first use (core/storage/s3.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_and_the_workers_start_without_boto3() -> None:
    probe = (
        "import sys, api.main, workers.tasks, workers.relay, workers.embedded;"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    env = {"TRAINPORT_DATABASE_URL": "sqlite:///unused.db", "PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    assert found.stdout.strip().splitlines()[-1] == "[]"
