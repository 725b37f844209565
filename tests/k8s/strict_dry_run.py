"""A server-side dry run that fails on every field the server would drop (the live tests use
it on a real cluster; tests/k8s/test_strict_dry_run.py proves it on the fake server).

`fieldValidation=Strict` makes a server refuse unknown fields, but only servers from 1.25 on
know the parameter (beta there, on by default); older ones ignore it and drop what they do not
know in silence, as a 1.20 server drops a Job's `completionMode`. So the parameter is sent only
where the server's version supports it, and on every version what the server answered it would
store is compared with what was sent: any field sent and not kept fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.kubernetes.manifests import AttemptManifests, Manifest
from core.scheduling.clusters import parse_version
from workers.executors.kubernetes.client import Apis, read_json

FIELD_VALIDATION = (1, 25)


def strict_options(apis: Apis) -> dict[str, Any]:
    """`dry_run=All`, with `field_validation=Strict` where the server supports it."""
    version = parse_version(apis.server_version())
    strict = version is not None and version >= FIELD_VALIDATION
    return {"dry_run": "All", **({"field_validation": "Strict"} if strict else {})}


def dropped_fields(sent: Any, kept: Any, path: str = "") -> list[str]:
    """Paths of the fields in `sent` (the wire form) that `kept` lacks."""
    if isinstance(sent, dict):
        kept = kept if isinstance(kept, dict) else {}
        return [
            dropped
            for key, value in sent.items()
            if value is not None
            for dropped in (
                dropped_fields(value, kept[key], f"{path}.{key}".lstrip("."))
                if key in kept
                else [f"{path}.{key}".lstrip(".")]
            )
        ]
    if isinstance(sent, list):
        kept = kept if isinstance(kept, list) else []
        return [
            dropped
            for index, value in enumerate(sent)
            for dropped in (
                dropped_fields(value, kept[index], f"{path}[{index}]")
                if index < len(kept)
                else [f"{path}[{index}]"]
            )
        ]
    return []


def dry_run_attempt(apis: Apis, built: AttemptManifests) -> list[str]:
    """Dry-run the attempt's Job and Service; every field the server would drop, by object."""
    return dry_run(apis, built.namespace, [built.job, built.service])


def dry_run(apis: Apis, namespace: str, manifests: list[Manifest]) -> list[str]:
    """Dry-run Jobs and Services as sent (plain JSON); every field the server would drop."""
    options = strict_options(apis)
    create: dict[str, Callable[..., Any]] = {
        "Job": apis.batch.create_namespaced_job,
        "Service": apis.core.create_namespaced_service,
    }
    return [
        f"{sent['kind']}: {field}"
        for sent in manifests
        for field in dropped_fields(
            sent, read_json(create[sent["kind"]], namespace, sent, **options)
        )
    ]
