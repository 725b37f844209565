"""Writing a checkpoint as the runtime does: files, then the COMMIT marker, then registration."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import boto3


def commit_files(
    uri: str, step: int, files: dict[str, bytes], endpoint: str | None = None
) -> dict[str, Any]:
    """Write `files` and then COMMIT under `<uri>/step-<step:010d>/`; the registration body."""
    folder = f"step-{step:010d}/"
    entries = [
        {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in files.items()
    ]
    marker = json.dumps({"step": step, "files": entries, "time": time.time()}).encode()
    writes = [*files.items(), ("COMMIT", marker)]  # the marker last
    if uri.startswith("file://"):
        root = Path(url2pathname(urlsplit(uri).path)) / folder
        for path, data in writes:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
    else:
        parts = urlsplit(uri)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for path, data in writes:
            key = parts.path.lstrip("/") + folder + path
            client.put_object(Bucket=parts.netloc, Key=key, Body=data)
    return {"step": step, "path": folder, "files": entries, "metrics": {"loss": 1.0 / (step + 1)}}


def commit_sha256(body: dict[str, Any], uri: str) -> str:
    marker = Path(url2pathname(urlsplit(uri).path)) / body["path"] / "COMMIT"
    return hashlib.sha256(marker.read_bytes()).hexdigest()
