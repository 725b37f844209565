"""Resolving a run's `data.datasets` references to versions, and pinning them at admission.

References: `name` (the newest version at admission), `name@3`, `name@sha256:<hex>`, or a bare
`sha256:<hex>` (any dataset of the org with that content). Pins are written once; a run that
comes back to the queue keeps them, so newer versions never change what a run trains on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.datasets import repository
from core.datasets.schemas import DIGEST_PREFIX
from core.models import Dataset, DatasetVersion, Run, RunDataset


class UnresolvedDataset(Exception):
    """A reference that names no existing dataset version; the message says which and why."""


def resolve(session: Session, org_id: str, ref: str) -> tuple[Dataset, DatasetVersion]:
    if ref.startswith(DIGEST_PREFIX):
        found = repository.oldest_with_digest(session, org_id, ref)
        if found is None:
            raise UnresolvedDataset(f"no dataset version has digest {ref}")
        return found[1], found[0]
    name, _, wanted = ref.partition("@")
    dataset = repository.get_dataset(session, org_id, name)
    if dataset is None:
        raise UnresolvedDataset(f"dataset {name!r} does not exist")
    version = _version(session, dataset, wanted)
    if version is None:
        what = f"version {wanted}" if wanted else "any version"
        raise UnresolvedDataset(f"dataset {name!r} has no {what}")
    return dataset, version


def _version(session: Session, dataset: Dataset, wanted: str) -> DatasetVersion | None:
    if not wanted:
        return repository.latest_version(session, dataset.id)
    if wanted.startswith(DIGEST_PREFIX):
        return repository.version_by_digest(session, dataset.id, wanted)
    if wanted.isdigit() and len(wanted) < 10:
        return repository.version_by_number(session, dataset.id, int(wanted))
    return None


def _referenced(run: Run) -> list[Any]:
    """The datasets the run's spec names: a run is pinned to these (at submit) and no others."""
    return list((run.spec.get("data") or {}).get("datasets") or [])


def pin_datasets(session: Session, run: Run) -> str | None:
    """Pin every referenced version on the run; None when done, else why the run must fail."""
    refs = _referenced(run)
    if not refs or repository.pins_of(session, run.id):
        return None
    pins: dict[str, RunDataset] = {}
    for ref in refs:
        try:
            dataset, version = resolve(session, run.org_id, ref)
        except UnresolvedDataset as exc:
            return f"data.datasets: {ref!r} cannot be used: {exc}"
        if dataset.name in pins:
            return f"data.datasets: dataset {dataset.name!r} is listed more than once"
        pins[dataset.name] = RunDataset(
            run_id=run.id,
            name=dataset.name,
            dataset_version_id=version.id,
            version=version.version,
            digest=version.digest,
        )
    session.add_all(pins.values())
    session.flush()
    return None


def pinned(session: Session, run: Run) -> dict[str, tuple[RunDataset, DatasetVersion]]:
    """The run's pins by dataset name, with their versions (no query for a run that names no
    dataset: most runs, at every launch; issue 17)."""
    if not _referenced(run):
        return {}
    found = {}
    for pin in repository.pins_of(session, run.id):
        version = repository.version_by_id(session, pin.dataset_version_id)
        if version is not None:
            found[pin.name] = (pin, version)
    return found
