"""Dataset queries, all scoped to one organization."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Dataset, DatasetVersion, RunDataset


def get_dataset(
    session: Session, org_id: str, name: str, *, for_update: bool = False
) -> Dataset | None:
    query = select(Dataset).where(Dataset.org_id == org_id, Dataset.name == name)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def list_datasets(session: Session, org_id: str) -> list[Dataset]:
    query = select(Dataset).where(Dataset.org_id == org_id).order_by(Dataset.name)
    return list(session.scalars(query).all())


def versions_of(session: Session, dataset_ids: list[str]) -> list[DatasetVersion]:
    query = (
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id.in_(dataset_ids))
        .order_by(DatasetVersion.dataset_id, DatasetVersion.version)
    )
    return list(session.scalars(query).all())


def version_by_number(session: Session, dataset_id: str, number: int) -> DatasetVersion | None:
    query = select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == number
    )
    return session.scalars(query).first()


def version_by_digest(session: Session, dataset_id: str, digest: str) -> DatasetVersion | None:
    query = select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset_id, DatasetVersion.digest == digest
    )
    return session.scalars(query).first()


def latest_version(session: Session, dataset_id: str) -> DatasetVersion | None:
    query = (
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.version.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def next_version_number(session: Session, dataset_id: str) -> int:
    highest = session.scalar(
        select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset_id)
    )
    return int(highest or 0) + 1


def oldest_with_digest(
    session: Session, org_id: str, digest: str
) -> tuple[DatasetVersion, Dataset] | None:
    row = session.execute(
        select(DatasetVersion, Dataset)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(DatasetVersion.org_id == org_id, DatasetVersion.digest == digest)
        .order_by(DatasetVersion.created_at)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def pins_of(session: Session, run_id: str) -> list[RunDataset]:
    query = select(RunDataset).where(RunDataset.run_id == run_id).order_by(RunDataset.name)
    return list(session.scalars(query).all())


def pinned_version_ids(session: Session, run_id: str, name: str) -> list[str]:
    query = select(RunDataset.dataset_version_id).where(
        RunDataset.run_id == run_id, RunDataset.name == name
    )
    return list(session.scalars(query).all())


def version_by_id(session: Session, version_id: str) -> DatasetVersion | None:
    return session.get(DatasetVersion, version_id)
