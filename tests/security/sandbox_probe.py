"""A hostile rank: `python -c PROBE '<targets JSON>'` tries each escape and prints what it reached.

It is the code an org-B member would submit. Everything it could read or write outside its
own folders is listed in one `PROBE {...}` line on stdout (the run's log), so a test asserts on
what it reached, not on an exception. Positive controls (its own workdir and checkpoint folder
are writable) keep a probe that never ran from passing.
"""

from __future__ import annotations

import json
from typing import Any

PROBE = r"""
import json, os, sys

targets = json.loads(sys.argv[1])
canaries = [c.encode() for c in targets["canaries"]] + [b"TRAINPORT_SECRET_KEY=", b"DATABASE_URL="]
own = [os.getcwd()] + [os.environ.get(name, "/nonexistent")
                       for name in ("TRAINPORT_CHECKPOINT_DIR", "TRAINPORT_CACHE_DIR", "HOME")]
datasets = json.loads(os.environ.get("TRAINPORT_DATASETS") or "{}")
dataset_dirs = [entry["uri"][len("file://"):] for entry in datasets.values()
                if entry["uri"].startswith("file://")]
found = {"uid": os.getuid(), "pid": os.getpid()}

def readable(path):
    try:
        with open(path, "rb") as source:
            source.read(1)
        return True
    except OSError:
        return False

def mine(path, extra=()):
    path = os.path.realpath(path)
    return any(path.startswith(os.path.realpath(p).rstrip("/") + "/") for p in [*own, *extra])

# 1. Other processes: every pid we can see, and any environment holding a platform secret.
me = os.getpid()
pids, leaks = {}, []
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) == me:
        continue
    try:
        with open(f"/proc/{entry}/cmdline", "rb") as source:
            pids[entry] = source.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        pids[entry] = "?"
    try:
        with open(f"/proc/{entry}/environ", "rb") as source:
            environ = source.read()
        if any(c in environ for c in canaries):
            leaks.append(entry)
    except OSError:
        pass
found["pids"] = pids
found["environ_leaks"] = leaks

# 2. The database file, the state folder, the store: anything readable that is not ours.
found["database"] = readable(targets["database"])
for name in ("state_dir", "storage_dir", "log_dir"):
    hits = []
    for root, dirs, files in os.walk(targets[name]):
        for file in files:
            path = os.path.join(root, file)
            if not mine(path, dataset_dirs) and readable(path):
                hits.append(path)
    found[name] = hits[:20]
found["foreign"] = {label: readable(path) for label, path in targets["foreign"].items()}

# 3. Writing into its own pinned dataset version.
writes = []
for folder in dataset_dirs:
    for root, _, files in os.walk(folder):
        for file in files:
            try:
                with open(os.path.join(root, file), "a") as sink:
                    sink.write("tampered\n")
                writes.append(os.path.join(root, file))
            except OSError:
                pass
    try:
        with open(os.path.join(folder, "added.txt"), "w") as sink:
            sink.write("added\n")
        writes.append(os.path.join(folder, "added.txt"))
    except OSError:
        pass
found["dataset_writes"] = writes

# Positive controls: what a run must still be able to do.
def writable(folder):
    try:
        with open(os.path.join(folder, "probe-was-here"), "w") as sink:
            sink.write("ok")
        return True
    except OSError:
        return False
found["own_workdir_writable"] = writable(os.getcwd())
found["own_checkpoints_writable"] = writable(os.environ["TRAINPORT_CHECKPOINT_DIR"])
found["own_tmp_writable"] = writable("/tmp")
print("PROBE " + json.dumps(found), flush=True)
"""

PLATFORM_MARKERS = ("workers.embedded", "pytest", "uvicorn", "local_shim", "celery", "sleeper")


def probe_command(python: str, targets: dict[str, Any]) -> list[str]:
    return [python, "-c", PROBE, json.dumps(targets)]


def probe_result(log_text: str) -> dict[str, Any]:
    """The probe's report from a rank's log (the line after the `stdout PROBE ` marker)."""
    for line in log_text.splitlines():
        _, _, rest = line.partition(" stdout PROBE ")
        if rest:
            loaded: dict[str, Any] = json.loads(rest)
            return loaded
    raise AssertionError(f"the probe printed no report; its log:\n{log_text}")


def reached(found: dict[str, Any]) -> dict[str, Any]:
    """Every escape that worked, by name; {} when the sandbox held."""
    escapes = {
        "ran as root": found["uid"] == 0,
        "platform processes visible": {
            pid: cmd
            for pid, cmd in found["pids"].items()
            if any(marker in cmd for marker in PLATFORM_MARKERS)
        },
        # Anything but the sandbox's own init (bwrap, pid 1 of its PID namespace).
        "other processes visible": {
            pid: cmd
            for pid, cmd in found["pids"].items()
            if not cmd.split(" ")[0].endswith("/bwrap")
        },
        "secrets in /proc/*/environ": found["environ_leaks"],
        "database file": found["database"],
        "state folder files": found["state_dir"],
        "store files": found["storage_dir"],
        "log files": found["log_dir"],
        "foreign files": [label for label, hit in found["foreign"].items() if hit],
        "writes into its pinned dataset": found["dataset_writes"],
    }
    return {name: what for name, what in escapes.items() if what}


def assert_contained(found: dict[str, Any]) -> None:
    assert found["own_workdir_writable"], found
    assert found["own_checkpoints_writable"], found
    assert found["own_tmp_writable"], found
    assert reached(found) == {}
