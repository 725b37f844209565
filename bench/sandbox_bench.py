"""What the local executor's sandbox adds to starting a rank: launch → the command running.

    .venv/bin/python -m bench.sandbox_bench              # 40 launches each way, interleaved
    .venv/bin/python -m bench.sandbox_bench --launches 100

Three `LocalExecutor`s over fresh state folders: two built as the worker builds them
(`rank_sandbox(settings)`: bubblewrap, as root a per-run uid), one with the attempt's own network
namespace (TRAINPORT_SANDBOX_NETWORK=isolated: `ip netns add`, listeners inside, `nsenter`) and
one sharing the host's, and one without a sandbox. Each
launch runs `python -S -c "print(time.time())"`: the printed time is the moment the user's
command runs, inside the sandbox or not, so the measured span is `launch()` (plan, folders,
chown, shim start) + the shim + bwrap and setpriv where used + the interpreter's start. Launches
alternate between the executors so all see the same machine load. Prints p50/p95/max of
each and the differences of the medians (issue 12's target: the sandbox adds ≤ 50 ms p50).
Numbers only; nothing here asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.launch_request import LaunchRequest
from core.logs import LogStore
from core.settings import SandboxNetwork, Settings
from workers.executors.local import LocalExecutor
from workers.executors.local_sandbox import rank_sandbox

COMMAND = [sys.executable, "-S", "-c", "import time; print(time.time(), flush=True)"]
WAIT_SECONDS = 30.0
API_URL = "http://127.0.0.1:8000"  # forwarded into isolated attempts; never called


def _executor(root: Path, network: SandboxNetwork | None) -> LocalExecutor:
    """An executor without a sandbox (`network` None), or sandboxed with that network."""
    settings = Settings(
        state_dir=root / "state",
        database_url=f"sqlite:///{root}/unused.db",
        sandbox_network=network or SandboxNetwork.HOST,
    )
    sandbox = rank_sandbox(settings) if network else None
    if network and sandbox is None:
        raise SystemExit("this machine cannot sandbox (see /readyz): nothing to compare")
    if network is SandboxNetwork.ISOLATED and sandbox and not sandbox.isolates_network:
        raise SystemExit("ranks cannot get a network of their own here (see /readyz)")
    log_store = LogStore(settings.log_root)
    return LocalExecutor(settings.state_dir, log_store, API_URL, 1.0, sandbox)


def _one(executor: LocalExecutor, number: int) -> float:
    """Seconds from launch() to the command's own clock reading."""
    request = LaunchRequest(f"run_bench{number:06d}", "org_bench", 1, {"command": COMMAND})
    log = executor.log_store.ref(request.run_id, 1, 0).path
    started = time.time()
    executor.launch(request)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:  # bounded poll: the shim writes the log from afar
        for line in log.read_text().splitlines() if log.exists() else []:
            _, _, printed = line.partition(" stdout ")
            if printed:
                executor.cleanup(request.run_id, 1)
                return float(printed) - started
        time.sleep(0.002)
    raise SystemExit(f"launch {number} never printed; its log:\n{log.read_text()}")


def _summary(name: str, spans: list[float]) -> float:
    ordered = sorted(spans)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000
    print(f"{name:<12} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms")
    return p50


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_bench", description=__doc__)
    parser.add_argument("--launches", type=int, default=40, help="launches of each kind")
    args = parser.parse_args(argv)
    kinds = {"unsandboxed": None, "host network": SandboxNetwork.HOST}
    kinds["own network"] = SandboxNetwork.ISOLATED
    spans: dict[str, list[float]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory() as folder:
        made = {
            name: _executor(Path(folder) / str(i), net)
            for i, (name, net) in enumerate(kinds.items())
        }
        for executor in made.values():
            _one(executor, 0)  # warm caches (page cache, bwrap's first exec)
        for number in range(1, args.launches + 1):
            for name, executor in made.items():
                spans[name].append(_one(executor, number))
    print(f"launch → command running, {args.launches} launches each (interleaved)")
    p50 = {name: _summary(name, spans[name]) for name in kinds}
    for name in ("host network", "own network"):
        added = p50[name] - p50["unsandboxed"]
        print(f"the sandbox with {name} adds {added:+.1f} ms at p50 (target: ≤ 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
