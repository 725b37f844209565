"""The trainer's wrapper on Kubernetes: run the command, then upload what the attempt leaves.

On the local executor the worker reads the attempt's folder itself (workers/harvest.py); a
pod's files are gone with the pod, so the pod ships them. The trainer container runs
`python3 -c <this source> COMMAND...` (only when the run has something to keep: `outputs`, a
`metrics.tensorboard_dir`, or a checkpoint volume — core/kubernetes/manifests.py).
This program:

1. starts COMMAND as its child, and forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to
   it: as PID 1 of the container it is the one the kubelet signals on a cancel, and the
   child keeps its own default handling (a script that ignores SIGTERM is SIGKILLed at the end
   of the grace period, as before);
2. when the child exits, uploads with the run token, through presigned URLs from the API
   (`leftovers/...` of core/run_storage: no storage credential in the pod), the regular files
   matching the `outputs` globs (TRAINPORT_OUTPUTS, JSON) under the working directory, the
   event files under TRAINPORT_TENSORBOARD_DIR, and the files under TRAINPORT_CHECKPOINT_DIR
   outside the runtime's `step-*` folders, each with its modification time;
3. exits with the child's status: its exit code, or 128 + N when signal N killed it — what
   the container runtime reports for a process killed by a signal — so exit codes, the
   podFailurePolicy's 126/127 rule and `killed` stay as they were. A command that cannot be
   started exits 127 (not found) or 126 (not executable), as a shell would. When the kernel's
   OOM killer ends the container (Kubernetes kills the whole container's cgroup on cgroup v2),
   nothing is uploaded, and the pod's `OOMKilled` still says why.

An upload failure is printed and never changes the exit status: the training's outcome is the
command's. Standard library only, no imports of ours (Python 3.9+ on the image).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")
MAX_FILES = 1000  # per kind, as the worker's own harvest
MAX_SINGLE_PUT = 5 << 30  # S3's limit for one PUT
BATCH = 100  # presigned per API call
RUNTIME_STEP = "step-"


def run(command: list[str]) -> int:
    """Run the command as a child, forwarding signals; its status as a shell reports it."""
    try:
        child = subprocess.Popen(command)  # noqa: S603 - the run's own command
    except FileNotFoundError as missing:
        print(f"trainport: cannot run {command[0]!r}: {missing}", file=sys.stderr)
        return 127
    except PermissionError as refused:
        print(f"trainport: cannot run {command[0]!r}: {refused}", file=sys.stderr)
        return 126
    for name in FORWARDED:
        number = getattr(signal, name)
        signal.signal(number, lambda received, _frame: child.send_signal(received))
    code = child.wait()
    return code if code >= 0 else 128 - code


def _regular(root: Path, path: Path) -> str | None:
    """`path` relative to `root` if it is a regular file there reached through no link."""
    try:
        relative = path.relative_to(root)
        if not path.is_file() or path.is_symlink() or path.resolve() != root / relative:
            return None
    except (OSError, ValueError):
        return None
    return relative.as_posix()


def _expanded(root: Path, patterns: list[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                found.update(path.rglob("*"))
            else:
                found.add(path)
    return sorted(found)


def files_to_keep(env: dict[str, str], workdir: Path) -> list[tuple[str, Path]]:
    """(run storage key, file) of everything to upload (see the module docstring)."""
    root = workdir.resolve()
    kinds = []
    globs = json.loads(env.get("TRAINPORT_OUTPUTS") or "[]")
    if globs:
        kinds.append(("outputs", root, _expanded(root, globs)))
    tensorboard = env.get("TRAINPORT_TENSORBOARD_DIR")
    if tensorboard:
        kinds.append(("tensorboard", root, _expanded(root, [f"{tensorboard}/**/*"])))
    checkpoints = env.get("TRAINPORT_CHECKPOINT_DIR")
    if checkpoints and Path(checkpoints).is_dir():
        folder = Path(checkpoints).resolve()
        kinds.append(("checkpoints", folder, sorted(folder.rglob("*"))))
    chosen = []
    for kind, base, paths in kinds:
        kept = [(relative, path) for path in paths if (relative := _regular(base, path))]
        if kind == "checkpoints":
            kept = [(r, p) for r, p in kept if _loose(r)]
        chosen += [(f"leftovers/{kind}/{relative}", path) for relative, path in kept[:MAX_FILES]]
    return chosen


def _loose(relative: str) -> bool:
    parts = relative.split("/")
    return not parts[0].startswith(RUNTIME_STEP) and not any(p.startswith(".") for p in parts)


def _api(env: dict[str, str], path: str, body: object) -> object:
    request = urllib.request.Request(  # noqa: S310 - the platform's own API URL
        f"{env['TRAINPORT_API_URL']}/v1/runs/{env['TRAINPORT_RUN_ID']}{path}",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {env['TRAINPORT_RUN_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        return json.load(answer)


def _put(url: str, path: Path) -> None:
    with path.open("rb") as source:
        request = urllib.request.Request(url, data=source, method="PUT")  # noqa: S310
        request.add_header("Content-Length", str(path.stat().st_size))
        # else urllib says `application/x-www-form-urlencoded`, and a server may parse it so
        request.add_header("Content-Type", "application/octet-stream")
        with urllib.request.urlopen(request, timeout=600):  # noqa: S310 - presigned by the API
            pass


def upload(env: dict[str, str], files: list[tuple[str, Path]]) -> int:
    """PUT each file through a presigned URL; the number uploaded. Each file's modification
    time goes along in `leftovers/mtimes.json` (loose checkpoints are dated by it)."""
    files = [(key, path) for key, path in files if path.stat().st_size <= MAX_SINGLE_PUT]
    mtimes = {key: path.stat().st_mtime for key, path in files}
    stamp = Path(os.environ.get("TMPDIR", "/tmp")) / f"trainport-mtimes-{os.getpid()}.json"  # noqa: S108
    stamp.write_text(json.dumps(mtimes))
    everything = [*files, ("leftovers/mtimes.json", stamp)]  # last: the upload finished
    for start in range(0, len(everything), BATCH):
        batch = everything[start : start + BATCH]
        operations = [{"method": "PUT", "key": key} for key, _ in batch]
        answer = _api(env, "/storage/presign", {"operations": operations})
        urls = [op["url"] for op in answer["operations"]]  # type: ignore[index]
        for index, (_, path) in enumerate(batch):  # no zip(strict=): Python 3.9 images
            _put(urls[index], path)
    return len(files)


def main(argv: list[str]) -> int:
    status = run(argv)
    env = dict(os.environ)
    try:
        files = files_to_keep(env, Path.cwd())
        wanted = ("TRAINPORT_OUTPUTS", "TRAINPORT_TENSORBOARD_DIR", "TRAINPORT_CHECKPOINT_DIR")
        if any(env.get(name) for name in wanted):
            began = time.monotonic()
            count = upload(env, files)
            spent = time.monotonic() - began
            print(f"trainport: uploaded {count} file(s) the attempt leaves in {spent:.1f}s")
    except Exception as failed:  # the training's outcome is the command's, never the upload's
        print(f"trainport: uploading what the attempt leaves failed: {failed}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
