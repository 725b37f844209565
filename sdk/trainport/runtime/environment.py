"""What a run learns from its environment: who it is, where to report, where to keep things.

The platform sets these for every rank it starts (see docs/runtime-api.md):

| Variable | Meaning |
|---|---|
| `TRAINPORT_RUN_ID`, `TRAINPORT_ATTEMPT` | the run and the attempt (1, 2, ...) this process is |
| `TRAINPORT_API_URL`, `TRAINPORT_RUN_TOKEN` | where to report, and the run's Bearer token |
| `TRAINPORT_CHECKPOINT_URI` | `file:///abs/dir/` or `s3://bucket/prefix/`, shared by attempts |
| `TRAINPORT_CHECKPOINT_DIR` | a local directory; used when no URI is given |
| `TRAINPORT_DATASETS` | JSON `{"name": {"digest": "sha256:<hex>", "uri": "..."}}` |
| `TRAINPORT_CACHE_DIR` | where downloaded datasets and checkpoints are kept |
| `RANK`, `WORLD_SIZE`, `LOCAL_RANK` | the process's place in a distributed run |

Without `TRAINPORT_RUN_ID` the process is not part of a run: the runtime works offline, with
checkpoints and metrics under `./.trainport-local/`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

OFFLINE_ROOT = Path(".trainport-local")
OFFLINE_RUN_ID = "local"


class RuntimeConfigError(ValueError):
    """A TRAINPORT_* variable the runtime cannot make sense of."""


@dataclass(frozen=True)
class DatasetRef:
    """A dataset pinned to a run: its content digest and where its files are."""

    name: str
    digest: str
    uri: str


@dataclass(frozen=True)
class RunEnvironment:
    run_id: str
    attempt: int
    api_url: str | None
    token: str | None
    checkpoint_uri: str
    cache_dir: Path
    datasets: Mapping[str, DatasetRef] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def online(self) -> bool:
        """Part of a platform run with somewhere to report to."""
        return self.run_id != OFFLINE_RUN_ID and bool(self.api_url)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that reports metrics and writes checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunEnvironment:
        env = os.environ if env is None else env
        run_id = env.get("TRAINPORT_RUN_ID") or OFFLINE_RUN_ID
        local_root = OFFLINE_ROOT.resolve()
        return cls(
            run_id=run_id,
            attempt=_int(env, "TRAINPORT_ATTEMPT", 1),
            api_url=(env.get("TRAINPORT_API_URL") or "").rstrip("/") or None,
            token=env.get("TRAINPORT_RUN_TOKEN") or None,
            checkpoint_uri=checkpoint_uri(env, local_root / "checkpoints"),
            cache_dir=cache_dir(env),
            datasets=parse_datasets(env.get("TRAINPORT_DATASETS", "")),
            rank=_int(env, "RANK", 0),
            world_size=_int(env, "WORLD_SIZE", 1),
            local_rank=_int(env, "LOCAL_RANK", 0),
        )


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """`TRAINPORT_CACHE_DIR`, else the user's cache folder: downloads are kept there."""
    env = os.environ if env is None else env
    cache = env.get("TRAINPORT_CACHE_DIR")
    return Path(cache).expanduser() if cache else _default_cache(env)


def checkpoint_uri(env: Mapping[str, str], fallback: Path) -> str:
    """`TRAINPORT_CHECKPOINT_URI`, else `TRAINPORT_CHECKPOINT_DIR` as a file URI, else the
    fallback; always ending in `/`."""
    uri = env.get("TRAINPORT_CHECKPOINT_URI") or ""
    if not uri:
        directory = env.get("TRAINPORT_CHECKPOINT_DIR")
        uri = Path(directory).expanduser().resolve().as_uri() if directory else fallback.as_uri()
    if not uri.startswith(("file://", "s3://")):
        raise RuntimeConfigError(f"TRAINPORT_CHECKPOINT_URI must be file:// or s3://, not {uri!r}")
    return uri if uri.endswith("/") else uri + "/"


def file_uri_path(uri: str) -> Path:
    """The local path of a `file://` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise RuntimeConfigError(f"not a local file URI: {uri!r}")
    return Path(unquote(parsed.path))


def parse_datasets(raw: str) -> dict[str, DatasetRef]:
    if not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise RuntimeConfigError(f"TRAINPORT_DATASETS is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RuntimeConfigError("TRAINPORT_DATASETS must be a JSON object of datasets")
    refs = {}
    for name, entry in document.items():
        if not isinstance(entry, dict) or not entry.get("digest") or not entry.get("uri"):
            raise RuntimeConfigError(f"TRAINPORT_DATASETS[{name!r}] needs a digest and a uri")
        refs[name] = DatasetRef(name, str(entry["digest"]), str(entry["uri"]))
    return refs


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeConfigError(f"{name} must be an integer, not {raw!r}") from None


def _default_cache(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trainport"
