"""A hostile rank: `python -c PROBE '<targets JSON>'` tries each escape and prints what it reached.

It is the code an org-B member would submit. Everything it could read or write outside its
own folders is listed in one `PROBE {...}` line on stdout (the run's log), so a test asserts on
what it reached, not on an exception. Positive controls (its own workdir and checkpoint folder
are writable) keep a probe that never ran from passing.

With `targets["api"]` it also calls the API with its own run token, as any run can: org A's
run and dataset, the run list, storage beyond its own, dataset sources, and (on its next
attempt, with `fail_attempt`) the token of its ended attempt. Those probes count only once the
run has read its own run and sent a heartbeat (`assert_reached_the_api`): a probe that cannot
reach the API fails the test instead of passing it.
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

# 4. The API, with the run's own token (TRAINPORT_RUN_TOKEN at TRAINPORT_API_URL): org A's run,
# the run list, storage and datasets beyond its own, and its previous attempt's token.
api = targets.get("api")
if api:
    import urllib.error, urllib.request

    base = os.environ.get("TRAINPORT_API_URL", "")
    own_id = os.environ.get("TRAINPORT_RUN_ID", "")
    token = os.environ.get("TRAINPORT_RUN_TOKEN", "")
    a_run, a_data = api["a_run"], api["a_dataset"]

    def call(method, path, body=None, bearer=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method)
        request.add_header("Authorization", "Bearer " + (bearer or token))
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")
        except OSError as error:  # unreachable: status 0, which the test refuses
            return 0, repr(error)

    def presign(run_id, key):
        return call("POST", f"/v1/runs/{run_id}/storage/presign",
                    {"operations": [{"method": "GET", "key": key}]})

    own_read = call("GET", f"/v1/runs/{own_id}")
    found["api_own_read"] = own_read[0]
    found["api_own_heartbeat"] = call("POST", f"/v1/runs/{own_id}/heartbeat", {"step": 1})[0]
    attempts = {
        "read org A's run": call("GET", f"/v1/runs/{a_run}"),
        "org A's run events": call("GET", f"/v1/runs/{a_run}/events"),
        "org A's checkpoints": call("GET", f"/v1/runs/{a_run}/checkpoints"),
        "metrics into org A's run": call("POST", f"/v1/runs/{a_run}/metrics",
                                         {"points": [{"step": 1, "values": {"loss": 0.0}}]}),
        "list runs": call("GET", "/v1/runs"),
        "presign org A's run's checkpoints": presign(a_run, "checkpoints/secret.bin"),
        "list org A's run's storage": call("GET", f"/v1/runs/{a_run}/storage/objects"),
        "presign another run's prefix via its own": presign(
            own_id, f"../{a_run}/checkpoints/secret.bin"),
        "presign org A's dataset via its own": presign(own_id, f"datasets/{a_data}/train.txt"),
        "read org A's dataset": call("GET", f"/v1/datasets/{a_data}"),
        "org A's dataset manifest": call("GET", f"/v1/datasets/{a_data}/versions/1/manifest"),
        "list datasets": call("GET", "/v1/datasets"),
        "create a dataset": call("POST", "/v1/datasets", {"name": "probe-made"}),
        "register org A's store as a source": call(
            "POST", f"/v1/datasets/{api['own_dataset']}/versions", {"source": api["a_source"]}),
        "register another bucket as a source": call(
            "POST", f"/v1/datasets/{api['own_dataset']}/versions",
            {"source": "s3://another-bucket/data/"}),
        "submit a run": call("POST", "/v1/runs", {"command": ["true"]}),
        "read the org's secrets": call("GET", "/v1/secrets"),
    }
    # The previous attempt left its token in the checkpoint folder, which outlives attempts.
    kept = os.path.join(os.environ["TRAINPORT_CHECKPOINT_DIR"], ".probe-earlier-token")
    if os.path.exists(kept):
        earlier = open(kept).read().strip()
        for label, (method, path, body) in {
            "read its run": ("GET", f"/v1/runs/{own_id}", None),
            "heartbeat": ("POST", f"/v1/runs/{own_id}/heartbeat", {"step": 2}),
            "list its checkpoints": ("GET", f"/v1/runs/{own_id}/checkpoints", None),
            "presign its checkpoints": (
                "POST", f"/v1/runs/{own_id}/storage/presign",
                {"operations": [{"method": "PUT", "key": "checkpoints/x"}]}),
            "its dataset's manifest": (
                "GET", f"/v1/datasets/{api['own_dataset']}/versions/1/manifest", None),
        }.items():
            attempts["earlier attempt's token: " + label] = call(method, path, body, earlier)
    with open(kept, "w") as sink:
        sink.write(token)
    found["api"] = {label: status for label, (status, _) in attempts.items()}
    # A list that answers may hold the run itself and nothing else.
    listed = attempts.pop("list runs")
    others = []
    if listed[0] == 200:
        others = [r["id"] for r in json.loads(listed[1])["data"] if r["id"] != own_id]
    found["api_reached"] = {label: text[:300] for label, (status, text) in attempts.items()
                            if 200 <= status < 300}
    if others:
        found["api_reached"]["list runs"] = others

print("PROBE " + json.dumps(found), flush=True)
if api and api.get("fail_attempt") == os.environ.get("TRAINPORT_ATTEMPT"):
    sys.exit(3)  # a user failure: the run retries, and its next attempt tries this token
"""

PLATFORM_MARKERS = ("workers.embedded", "pytest", "uvicorn", "local_shim", "celery", "sleeper")


# A run's command items are at most 4,096 characters each (core/runs/spec.py): the probe
# travels in pieces, which this loader joins and runs with `sys.argv[1]` as its targets.
_PIECE = 4000
_LOADER = (
    "import sys; n = int(sys.argv[1]); code = ''.join(sys.argv[2 : 2 + n]); "
    "sys.argv = [sys.argv[0], *sys.argv[2 + n :]]; exec(code)"
)


def probe_command(python: str, targets: dict[str, Any]) -> list[str]:
    pieces = [PROBE[i : i + _PIECE] for i in range(0, len(PROBE), _PIECE)]
    return [python, "-c", _LOADER, str(len(pieces)), *pieces, json.dumps(targets)]


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
        "API answers": found.get("api_reached", {}),
    }
    return {name: what for name, what in escapes.items() if what}


def assert_contained(found: dict[str, Any]) -> None:
    assert found["own_workdir_writable"], found
    assert found["own_checkpoints_writable"], found
    assert found["own_tmp_writable"], found
    assert reached(found) == {}


def assert_reached_the_api(found: dict[str, Any]) -> None:
    """The API probes are real: the run authenticated on its own run, and every call was
    answered by the API (status 0: unreachable)."""
    assert found.get("api_own_read") == 200, found
    assert found.get("api_own_heartbeat") == 204, found
    assert 0 not in found["api"].values(), found["api"]
