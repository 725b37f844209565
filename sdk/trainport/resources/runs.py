"""`client.runs`: submit, read, list, wait for, edit, cancel and delete training runs.

`Runs` and `AsyncRuns` have the same methods; the request each one sends is built once, in
`_run_calls`. Routes that land later (metrics, checkpoints, provenance) slot in the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from trainport._http import AsyncHTTP, SyncHTTP, connection_error
from trainport.errors import NotFound, WaitTimeout
from trainport.models import LogLine, Run, RunEvent, RunPlan
from trainport.pagination import AsyncPage, AsyncPageRequest, SyncPage
from trainport.resources import _run_calls as calls
from trainport.resources import _sampling as sampling
from trainport.resources._logs import LogFollower
from trainport.resources._run_calls import LabelSelector, RunRef, SpecLike
from trainport.resources.code import AsyncCode, Code
from trainport.resources.run_artifacts import AsyncRunArtifacts, RunArtifacts
from trainport.workdir import Progress


def poll_window(deadline: float | None, run: Run) -> int:
    """Seconds the next long-poll may last; WaitTimeout once the deadline has passed."""
    if deadline is None:
        return calls.LONG_POLL_SECONDS
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise WaitTimeout(f"Run {run.id} is still {run.status}; stopped waiting.", run)
    return max(1, min(calls.LONG_POLL_SECONDS, math.ceil(remaining)))


def _settled(run: Run, targets: frozenset[str]) -> bool:
    # A terminal run never changes again, so waiting for any other status would never end.
    return run.status in targets or run.is_terminal


class Runs(RunArtifacts):
    def __init__(self, http: SyncHTTP, code: Code | None = None) -> None:
        super().__init__(http)
        self._code = code or Code(http)

    def create(
        self,
        spec: SpecLike | None = None,
        *,
        project: str | None = None,
        idempotency_key: str | None = None,
        progress: Progress | None = None,
        **fields: Any,
    ) -> Run:
        """Submit a run from a `RunSpec`, a dict, or keyword fields (`image=`, `command=`, ...).

        A `workdir` that names a local folder is packed and uploaded first (`client.code`;
        unchanged content sends nothing) and the run refers to its digest; `progress(n)` hears
        of the bytes sent. Retries reuse one `Idempotency-Key` (yours, or a fresh uuid4), so a
        create retried after a lost answer never makes a second run.
        """
        document = calls.merged(spec, fields)
        if (folder := calls.workdir_folder(document)) is not None:
            document = calls.with_snapshot(document, self._code.upload(folder, progress=progress))
        call = calls.create(document, project, idempotency_key, {})
        return Run.model_validate(self._http.json(call))

    def plan(
        self, spec: SpecLike | None = None, *, project: str | None = None, **fields: Any
    ) -> RunPlan:
        """What `create` with these arguments would make, where it would run and what its
        `max_duration` would cost. Nothing is stored."""
        return RunPlan.model_validate(self._http.json(calls.plan(spec, project, fields)))

    def clone(
        self,
        run: RunRef,
        overrides: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        project: str | None = None,
    ) -> Run:
        """A new run from `run`'s spec with dotted-path `overrides` (`{"parameters.lr": 3e-4}`,
        the rules of the CLI's `--set`); the new run's `cloned_from` names its source."""
        return Run.model_validate(
            self._http.json(calls.clone(self.resolve(run), overrides, name, project))
        )

    def get(
        self, run: RunRef, *, wait: float | None = None, resource_version: int | None = None
    ) -> Run:
        """A run. With `wait`, the server holds the request until the run changes past
        `resource_version` (or `wait` seconds pass) and then answers."""
        return Run.model_validate(
            self._http.json(calls.get(self.resolve(run), wait, resource_version))
        )

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        project: str | None = None,
        labels: LabelSelector | None = None,
        name_prefix: str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        changed_since: int | None = None,
        limit: int | None = None,
    ) -> SyncPage[Run]:
        """Runs, newest first; iterate the page to walk every later page too.

        With `changed_since=N`, only runs changed after version N (the change feed), oldest
        change first; the last page's `resource_version` is the N to ask from next time.
        """
        params = calls.list_params(
            status=status,
            project=project,
            labels=labels,
            name_prefix=name_prefix,
            name=name,
            created_after=created_after,
            created_before=created_before,
            changed_since=changed_since,
            limit=limit,
        )
        return self._list_page(params)

    def _list_page(self, params: Mapping[str, Any]) -> SyncPage[Run]:
        body = self._http.json(calls.list_runs(params))

        def fetch_next(page: SyncPage[Run]) -> SyncPage[Run]:
            return self._list_page(
                calls.next_list_params(params, page.next_cursor, page.resource_version)
            )

        return SyncPage(
            calls.runs(body),
            body["has_more"],
            body.get("next_cursor"),
            body.get("resource_version"),
            fetch_next,
        )

    def update(
        self,
        run: RunRef,
        *,
        priority: str | None = None,
        max_duration: str | int | None = None,
        labels: Mapping[str, str] | None = None,
        if_match: str | int | None = None,
    ) -> Run:
        """Change priority, max_duration or labels. `if_match` (an ETag, or a resource_version)
        makes the edit fail with PreconditionFailed if the run changed since you read it."""
        call = calls.update(self.resolve(run), priority, max_duration, labels, if_match)
        return Run.model_validate(self._http.json(call))

    def cancel(self, run: RunRef) -> Run:
        """Cancel the run (idempotent): at once if it has not started, else via `stopping`."""
        return Run.model_validate(self._http.json(calls.cancel(self.resolve(run))))

    def delete(self, run: RunRef) -> None:
        """Delete a finished run (Conflict while it is still active)."""
        self._http.send(calls.delete(self.resolve(run)))

    def events(self, run: RunRef, *, limit: int | None = None) -> SyncPage[RunEvent]:
        """The run's history, oldest first; iterate the page to walk all of it."""
        return self._events_page(self.resolve(run), limit, None)

    def _events_page(self, run: RunRef, limit: int | None, after: str | None) -> SyncPage[RunEvent]:
        body = self._http.json(calls.events(run, limit, after))
        return SyncPage(
            calls.run_events(body),
            body["has_more"],
            body.get("next_cursor"),
            fetch_next=lambda page: self._events_page(run, limit, page.next_cursor),
        )

    def logs(
        self,
        run: RunRef,
        *,
        attempt: int | None = None,
        rank: int | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> Iterator[LogLine]:
        """One rank's output lines of one attempt (default: rank 0 of the latest attempt).

        With `follow`, new lines arrive as they are written until the attempt ends; a run that
        has not started yet is waited for (long-polled) first. A dropped connection is resumed
        where it broke: no line is repeated or lost.
        """
        run = self.resolve(run)
        follower = LogFollower(run, attempt, rank, tail, follow, self._http.retry_policy)
        while True:
            try:
                with self._http.stream(follower.request()) as response:
                    follower.connected(response)
                    kind = response.headers.get("content-type", "")
                    for raw in response.iter_lines():
                        if (line := follower.accept(raw, kind)) is not None:
                            yield line
                return
            except NotFound as missing:  # not started yet? wait for its first attempt
                current = self.get(run)
                window = follower.wait_for_log(current, missing)
                if window:
                    self.get(current, wait=window, resource_version=current.resource_version)
            except httpx.TransportError as exc:
                delay = follower.reconnect_delay()
                if delay is None:
                    raise connection_error(exc, self._http.base_url) from exc
                self._http.pause(delay)

    def sample(
        self,
        run: RunRef,
        prompt: str = "",
        *,
        step: int | None = None,
        tokens: int = 200,
        temperature: float = 0.8,
        seed: int = 0,
    ) -> str:
        """`prompt` and the text the model of an `lm` recipe run writes after it, generated on
        this machine's CPU from a checkpoint (the newest, or `step`). The checkpoint is
        downloaded once into the cache and verified. Needs torch: `trainport[recipes]`."""
        found = self.get(run)
        sampling.require_lm(found)
        folder = self._fetch_checkpoint(found, step)
        options = {"tokens": tokens, "temperature": temperature, "seed": seed}
        return sampling.run_sampler(sampling.lm_sampler(), folder, prompt, **options)

    def wait(
        self,
        run: RunRef,
        *,
        until: str | Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Block until the run's status is in `until` (default: succeeded, failed, cancelled).

        Uses the server's long-poll, so the answer comes as soon as the run changes; also
        returns once the run is terminal, since it cannot change again. Raises WaitTimeout
        after `timeout` seconds.
        """
        targets = calls.wait_targets(until)
        deadline = None if timeout is None else time.monotonic() + timeout
        current = self.get(run)
        while not _settled(current, targets):
            window = poll_window(deadline, current)
            current = self.get(current, wait=window, resource_version=current.resource_version)
        return current


class AsyncRuns(AsyncRunArtifacts):
    def __init__(self, http: AsyncHTTP, code: AsyncCode | None = None) -> None:
        super().__init__(http)
        self._code = code or AsyncCode(http)

    async def create(
        self,
        spec: SpecLike | None = None,
        *,
        project: str | None = None,
        idempotency_key: str | None = None,
        progress: Progress | None = None,
        **fields: Any,
    ) -> Run:
        """Submit a run; see `Runs.create`."""
        document = calls.merged(spec, fields)
        if (folder := calls.workdir_folder(document)) is not None:
            upload = await self._code.upload(folder, progress=progress)
            document = calls.with_snapshot(document, upload)
        call = calls.create(document, project, idempotency_key, {})
        return Run.model_validate(await self._http.json(call))

    async def plan(
        self, spec: SpecLike | None = None, *, project: str | None = None, **fields: Any
    ) -> RunPlan:
        """See `Runs.plan`."""
        return RunPlan.model_validate(await self._http.json(calls.plan(spec, project, fields)))

    async def clone(
        self,
        run: RunRef,
        overrides: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        project: str | None = None,
    ) -> Run:
        """See `Runs.clone`."""
        call = calls.clone(await self.resolve(run), overrides, name, project)
        return Run.model_validate(await self._http.json(call))

    async def get(
        self, run: RunRef, *, wait: float | None = None, resource_version: int | None = None
    ) -> Run:
        """A run, optionally long-polled; see `Runs.get`."""
        call = calls.get(await self.resolve(run), wait, resource_version)
        return Run.model_validate(await self._http.json(call))

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        project: str | None = None,
        labels: LabelSelector | None = None,
        name_prefix: str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        changed_since: int | None = None,
        limit: int | None = None,
    ) -> AsyncPageRequest[Run]:
        """Runs, newest first: `async for run in client.runs.list()` walks every page;
        `await client.runs.list()` is the first page."""
        params = calls.list_params(
            status=status,
            project=project,
            labels=labels,
            name_prefix=name_prefix,
            name=name,
            created_after=created_after,
            created_before=created_before,
            changed_since=changed_since,
            limit=limit,
        )
        return AsyncPageRequest(lambda: self._list_page(params))

    async def _list_page(self, params: Mapping[str, Any]) -> AsyncPage[Run]:
        body = await self._http.json(calls.list_runs(params))

        async def fetch_next(page: AsyncPage[Run]) -> AsyncPage[Run]:
            return await self._list_page(
                calls.next_list_params(params, page.next_cursor, page.resource_version)
            )

        return AsyncPage(
            calls.runs(body),
            body["has_more"],
            body.get("next_cursor"),
            body.get("resource_version"),
            fetch_next,
        )

    async def update(
        self,
        run: RunRef,
        *,
        priority: str | None = None,
        max_duration: str | int | None = None,
        labels: Mapping[str, str] | None = None,
        if_match: str | int | None = None,
    ) -> Run:
        """Change priority, max_duration or labels; see `Runs.update`."""
        call = calls.update(await self.resolve(run), priority, max_duration, labels, if_match)
        return Run.model_validate(await self._http.json(call))

    async def cancel(self, run: RunRef) -> Run:
        return Run.model_validate(await self._http.json(calls.cancel(await self.resolve(run))))

    async def delete(self, run: RunRef) -> None:
        await self._http.send(calls.delete(await self.resolve(run)))

    def events(self, run: RunRef, *, limit: int | None = None) -> AsyncPageRequest[RunEvent]:
        """The run's history, oldest first; iterate it, or await it for the first page."""

        async def first() -> AsyncPage[RunEvent]:
            return await self._events_page(await self.resolve(run), limit, None)

        return AsyncPageRequest(first)

    async def _events_page(
        self, run: RunRef, limit: int | None, after: str | None
    ) -> AsyncPage[RunEvent]:
        body = await self._http.json(calls.events(run, limit, after))

        async def fetch_next(page: AsyncPage[RunEvent]) -> AsyncPage[RunEvent]:
            return await self._events_page(run, limit, page.next_cursor)

        return AsyncPage(
            calls.run_events(body), body["has_more"], body.get("next_cursor"), None, fetch_next
        )

    async def logs(
        self,
        run: RunRef,
        *,
        attempt: int | None = None,
        rank: int | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[LogLine]:
        """One rank's output lines of one attempt, resumed across drops; see `Runs.logs`."""
        run = await self.resolve(run)
        follower = LogFollower(run, attempt, rank, tail, follow, self._http.retry_policy)
        while True:
            try:
                async with self._http.stream(follower.request()) as response:
                    follower.connected(response)
                    kind = response.headers.get("content-type", "")
                    async for raw in response.aiter_lines():
                        if (line := follower.accept(raw, kind)) is not None:
                            yield line
                return
            except NotFound as missing:  # not started yet? wait for its first attempt
                current = await self.get(run)
                window = follower.wait_for_log(current, missing)
                if window:
                    await self.get(current, wait=window, resource_version=current.resource_version)
            except httpx.TransportError as exc:
                delay = follower.reconnect_delay()
                if delay is None:
                    raise connection_error(exc, self._http.base_url) from exc
                await self._http.pause(delay)

    async def wait(
        self,
        run: RunRef,
        *,
        until: str | Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Wait on the long-poll until the run's status is in `until`; see `Runs.wait`."""
        targets = calls.wait_targets(until)
        deadline = None if timeout is None else time.monotonic() + timeout
        current = await self.get(run)
        while not _settled(current, targets):
            window = poll_window(deadline, current)
            current = await self.get(
                current, wait=window, resource_version=current.resource_version
            )
        return current
