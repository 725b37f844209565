"""The dashboard browser tests' runs on the live platform (tests/dashboard/live.py): the commands
they run (a sleeper; a trainer that logs a falling loss and prints hostile HTML, which every
page must show as text) and waiting, by long poll, until a run reaches a status.
"""

from __future__ import annotations

import time

from tests.dashboard.live import Platform

HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
SLEEP = "import time; time.sleep(120)"
TRAIN = f"""
import os, time, trainport.runtime as rt
run = rt.init()
print({HOSTILE!r}, flush=True)
lr = float(os.environ.get("LR", "1"))
for i in range(int(os.environ.get("STEPS", "40"))):
    print(f"step {{i}} loss {{lr / (i + 1):.4f}}", flush=True)
    run.log(step=i, loss=lr / (i + 1))
    time.sleep(0.1)
time.sleep(float(os.environ.get("LINGER", "0")))  # still running after its last step
"""


def wait_until(platform: Platform, run_id: str, statuses: set[str], timeout: float = 45) -> None:
    deadline, version = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        params = {"wait": 10, "resource_version": version}
        run = platform.api.get(f"/v1/runs/{run_id}", params=params).json()
        if run["status"] in statuses:
            return
        version = run["resource_version"]
    raise AssertionError(f"{run_id} stayed {run['status']}")
