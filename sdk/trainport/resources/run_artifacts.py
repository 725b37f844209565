"""What a run produced: `client.runs.metrics / checkpoints / provenance / download_checkpoint`.

`Runs` and `AsyncRuns` inherit these from `RunArtifacts` and `AsyncRunArtifacts`; the requests
are built once, below, for both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainport._http import APIRequest
from trainport.errors import TrainportError
from trainport.resources import _sampling as sampling
from trainport.resources._names import AsyncRunResource, SyncRunResource
from trainport.resources._run_calls import RunRef, run_id, run_path
from trainport.runtime.digests import download_verified
from trainport.training_models import Checkpoint, Metrics, OutputFile, Provenance

COMMIT = "COMMIT"  # the marker the runtime writes last into a checkpoint folder


def _metrics(run: RunRef, names: str | Iterable[str] | None, max_points: int | None) -> APIRequest:
    listed = [names] if isinstance(names, str) else list(names) if names else None
    params = {"name": listed, "max_points": max_points}
    return APIRequest("GET", run_path(run, "/metrics"), params=params)


def _checkpoints(run: RunRef) -> APIRequest:
    return APIRequest("GET", run_path(run, "/checkpoints"))


def _provenance(run: RunRef) -> APIRequest:
    return APIRequest("GET", run_path(run, "/provenance"))


def _outputs(run: RunRef, attempt: int | None) -> APIRequest:
    return APIRequest("GET", run_path(run, "/outputs"), params={"attempt": attempt})


def _output_list(body: Any) -> list[OutputFile]:
    return [OutputFile.model_validate(f) for f in body["data"]]


def _latest(found: list[OutputFile]) -> list[OutputFile]:
    """The files of the latest attempt that left any."""
    newest = max((f.attempt for f in found), default=None)
    return [f for f in found if f.attempt == newest]


def _file(url: str) -> APIRequest:
    """An API path (local storage); presigned URLs are fetched without the client's auth."""
    return APIRequest("GET", url, timeout=None)


def _checkpoint_list(body: Any) -> list[Checkpoint]:
    return [Checkpoint.model_validate(c) for c in body]


def _downloads(checkpoint: Checkpoint) -> list[tuple[str, str]]:
    """(url, relative path) of each file, then the COMMIT marker from the API: with it, the
    downloaded folder is a complete checkpoint that `provenance.verify` can check."""
    marker = f"/v1/runs/{checkpoint.run_id}/checkpoints/{checkpoint.step}/files/{COMMIT}"
    return [(entry.url or "", entry.path) for entry in checkpoint.files] + [(marker, COMMIT)]


def _pick(checkpoints: list[Checkpoint], step: int | None, run: RunRef) -> Checkpoint:
    for checkpoint in checkpoints:
        if step is None or checkpoint.step == step:
            return checkpoint
    which = "any checkpoint" if step is None else f"a checkpoint at step {step}"
    steps = ", ".join(str(c.step) for c in checkpoints)
    there = f" (its checkpoints: steps {steps})" if steps else ""
    raise TrainportError(f"Run {run_id(run)} has no {which}{there}.")


def _check_sha256(target: Path, entry: OutputFile) -> None:
    digest = hashlib.sha256()
    with target.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    if entry.sha256 and digest.hexdigest() != entry.sha256:
        raise TrainportError(
            f"{entry.path} (attempt {entry.attempt}) downloaded with another sha256 than the "
            "platform recorded: download it again."
        )


class RunArtifacts(SyncRunResource):
    def metrics(
        self,
        run: RunRef,
        *,
        name: str | Iterable[str] | None = None,
        max_points: int | None = None,
    ) -> Metrics:
        """Metric series by name (every series when `name` is None), each downsampled by the
        server to at most `max_points` (default 1000) keeping the first and last points."""
        return Metrics.model_validate(
            self._http.json(_metrics(self.resolve(run), name, max_points))
        )

    def checkpoints(self, run: RunRef) -> list[Checkpoint]:
        """The run's registered checkpoints, newest step first, with download URLs."""
        return _checkpoint_list(self._http.json(_checkpoints(self.resolve(run))))

    def provenance(self, run: RunRef) -> Provenance:
        """The signed provenance record (NotFound before the run has started)."""
        return Provenance.model_validate(self._http.json(_provenance(self.resolve(run))))

    def outputs(self, run: RunRef, *, attempt: int | None = None) -> list[OutputFile]:
        """Files the run's `outputs` globs matched when each attempt ended (or one attempt's),
        with size, sha256 and download URL."""
        return _output_list(self._http.json(_outputs(self.resolve(run), attempt)))

    def download_outputs(
        self, run: RunRef, destination: str | Path, *, attempt: int | None = None
    ) -> Path:
        """An attempt's outputs (default: the latest attempt that left any) into
        `destination/`, at their paths relative to the run's working directory; each file is
        checked against the sha256 the platform recorded."""
        folder = Path(destination)
        for entry in _latest(self.outputs(run, attempt=attempt)):
            target = folder / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            self._download(entry.url, target)
            _check_sha256(target, entry)
        return folder

    def download_checkpoint(
        self, run: RunRef, destination: str | Path, *, step: int | None = None
    ) -> Path:
        """Every file of a checkpoint (the newest, or `step`) and its COMMIT marker into
        `destination/`."""
        checkpoint = _pick(self.checkpoints(run), step, run)
        folder = Path(destination)
        for url, path in _downloads(checkpoint):
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            self._download(url, target)
        return folder

    def _fetch_checkpoint(self, run: RunRef, step: int | None) -> Path:
        """A checkpoint's files in the local cache, downloaded once and verified."""
        checkpoint = _pick(self.checkpoints(run), step, run)
        urls = {entry.path: entry.url or "" for entry in checkpoint.files}
        source = f"checkpoint {checkpoint.step} of {checkpoint.run_id}: "
        try:
            return download_verified(
                sampling.cache_folder(checkpoint),
                sampling.entries(checkpoint),
                lambda entry, target: self._download(urls[entry.path], target),
                source,
            )
        except OSError as exc:
            raise TrainportError(f"Cannot fetch {source}{exc}") from exc

    def _download(self, url: str, target: Path) -> None:
        if url.startswith(self._http.base_url + "/"):
            url = url[len(self._http.base_url) :]  # our own API: send it with the key
        if url.startswith(("http://", "https://")):
            import httpx

            with httpx.stream("GET", url, timeout=60.0) as response, target.open("wb") as sink:
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    sink.write(chunk)
            return
        with self._http.stream(_file(url)) as response, target.open("wb") as sink:
            for chunk in response.iter_bytes(1 << 20):
                sink.write(chunk)


class AsyncRunArtifacts(AsyncRunResource):
    async def metrics(
        self,
        run: RunRef,
        *,
        name: str | Iterable[str] | None = None,
        max_points: int | None = None,
    ) -> Metrics:
        """Metric series by name, downsampled by the server to at most `max_points` each."""
        return Metrics.model_validate(
            await self._http.json(_metrics(await self.resolve(run), name, max_points))
        )

    async def checkpoints(self, run: RunRef) -> list[Checkpoint]:
        """The run's registered checkpoints, newest step first, with download URLs."""
        return _checkpoint_list(await self._http.json(_checkpoints(await self.resolve(run))))

    async def outputs(self, run: RunRef, *, attempt: int | None = None) -> list[OutputFile]:
        """Files the run's `outputs` globs matched when each attempt ended."""
        return _output_list(await self._http.json(_outputs(await self.resolve(run), attempt)))

    async def provenance(self, run: RunRef) -> Provenance:
        """The signed provenance record (NotFound before the run has started)."""
        return Provenance.model_validate(
            await self._http.json(_provenance(await self.resolve(run)))
        )
