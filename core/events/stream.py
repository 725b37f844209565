"""Event streams: one pump per process reads new events once and fans them out to its streams.

A stream must hold no database connection while idle, and a thousand of them must not each
query the database on every change. So each API process runs one `EventPump`: it waits on the
change hub (core/notify.py, woken by NOTIFY on PostgreSQL or the version watcher on SQLite),
then reads every org's events past its position in one short transaction and hands each event
to the queues of the streams of that event's org. A stream filters what it is handed.

Resuming without gap or duplicate: a stream subscribes to the pump first, then catches up from
the database (`read_events` after its `since`, up to the committed counter value, which is at
or past the pump's position at subscription), and then takes from its queue only events past
the last one it saw. The pump's reads are contiguous from its position at subscription, so the
catch-up and the queue overlap but never leave a hole; the overlap is dropped by position. A
stream whose queue overflows (a client that does not read) is told so and catches up again
from the database where it stood.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.events.repository import Event, EventBatch
from core.notify import ANY_RUN, ChangeHub, hub
from core.runs.repository import RunFilter

PUMP_BATCH = 1000  # events per read of the pump
CATCH_UP_BATCH = 500  # events per read of a stream catching up
QUEUE_LIMIT = 10_000  # events a stream may have waiting before it catches up from the database
PUMP_RETRY_SECONDS = 1.0  # after a failed read (the database restarting)
log = logging.getLogger(__name__)

ReadAll = Callable[[int], Awaitable[EventBatch]]  # every org's events after a version
Encoded = tuple[Event, bytes]  # an event and its SSE message, encoded once for every stream


@dataclass(eq=False)
class Subscription:
    """A stream's place in the pump: its org, its queue, and whether the queue overflowed."""

    org_id: str
    queue: list[Encoded] = field(default_factory=list)
    overflowed: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, events: list[Encoded]) -> None:
        if self.overflowed:
            return
        if len(self.queue) + len(events) > QUEUE_LIMIT:
            self.queue.clear()
            self.overflowed = True
        else:
            self.queue.extend(events)
        self.ready.set()

    def take(self) -> tuple[list[Encoded], bool]:
        """What was handed over since the last take, and whether some of it was dropped."""
        events, overflowed = self.queue, self.overflowed
        self.queue, self.overflowed = [], False
        self.ready.clear()
        return events, overflowed


class EventPump:
    """One per process: reads new events on each change and hands them to the streams."""

    def __init__(self, read_all: ReadAll, start_at: Callable[[], Awaitable[int]]) -> None:
        self._read_all = read_all
        self._start_at = start_at
        self._streams: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.position = 0

    @property
    def open_streams(self) -> int:
        return sum(len(streams) for streams in self._streams.values())

    async def subscribe(self, org_id: str) -> Subscription:
        """A new stream's subscription; returns once the pump has a position to read from."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="trainport-event-pump")
        await self._started.wait()
        subscription = Subscription(org_id)
        self._streams[org_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        streams = self._streams.get(subscription.org_id)
        if streams is not None:
            streams.discard(subscription)
            if not streams:
                del self._streams[subscription.org_id]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, changes: ChangeHub = hub) -> None:
        flag = changes.subscribe(ANY_RUN)  # before the first read: no change slips between
        try:
            while True:
                try:
                    self.position = await self._start_at()
                    break
                except Exception as exc:  # no database yet: try again
                    log.warning("event pump cannot read the version (%s); retrying", exc)
                    await asyncio.sleep(PUMP_RETRY_SECONDS)
            self._started.set()
            while True:
                await flag.wait()
                flag.clear()
                await self._drain()
        finally:
            changes.unsubscribe(ANY_RUN, flag)

    async def _drain(self) -> None:
        more = True
        while more:
            try:
                batch = await self._read_all(self.position)
            except Exception as exc:  # the next change (or this retry) reads again
                log.warning("event pump read failed (%s); retrying", exc)
                await asyncio.sleep(PUMP_RETRY_SECONDS)
                continue
            by_org: dict[str, list[Encoded]] = defaultdict(list)
            for event in batch.events:
                if event.org_id in self._streams:  # encoded once, whatever the streams
                    by_org[event.org_id].append((event, sse_event(event)))
            for org_id, events in by_org.items():
                for subscription in self._streams.get(org_id, ()):
                    subscription.offer(events)
            self.position, more = batch.position, batch.more


def matches(criteria: RunFilter, event: Event, run_id: str | None = None) -> bool:
    """Whether the run list's filters (and a run token's or key's scope) let the event through.

    `status` is the run's status as of the event: the status it moved to, or for other events
    (an edit, a deletion) the run's status now.
    """
    if run_id is not None and event.run_id != run_id:
        return False
    if criteria.project_id and event.project_id != criteria.project_id:
        return False
    if criteria.statuses and (event.to_status or event.run_status) not in criteria.statuses:
        return False
    labels = event.run_labels or {}
    if any(labels.get(key) != value for key, value in criteria.labels_equal.items()):
        return False
    if any(key not in labels for key in criteria.labels_present):
        return False
    if criteria.name_prefix and not event.run_name.startswith(criteria.name_prefix):
        return False
    if criteria.name and event.run_name != criteria.name:
        return False
    if criteria.created_after and not event.run_created_at > criteria.created_after:
        return False
    return not (criteria.created_before and not event.run_created_at < criteria.created_before)


def event_document(event: Event) -> dict[str, Any]:
    """The event as clients see it (JSON pages and SSE `data`)."""
    return {
        "id": event.id,
        "run_id": event.run_id,
        "project_id": event.project_id,
        "run_name": event.run_name,
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "reason": event.reason,
        "message": event.message,
        "resource_version": event.resource_version,
        "actor": event.actor,
        "created_at": event.created_at,
    }


def sse_event(event: Event) -> bytes:
    """The event as an SSE message: `id` its resource version, `event` `run.<kind>`."""
    data = event_document(event)
    data["created_at"] = event.created_at.isoformat().replace("+00:00", "Z")
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {event.resource_version}\nevent: run.{event.kind}\ndata: {body}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


async def stream(
    pump: EventPump,
    org_id: str,
    since: int,
    catch_up: Callable[[int], Awaitable[EventBatch]],
    wanted: Callable[[Event], bool],
    keepalive_seconds: float,
) -> AsyncIterator[bytes]:
    """An event stream's body: events past `since` that `wanted` accepts, then new ones, forever.

    `catch_up(after)` reads this stream's events (the org's or the run's) from the database in
    a short transaction of its own; nothing is held between reads.
    """
    subscription = await pump.subscribe(org_id)
    try:
        last = since
        yield b"retry: 2000\n\n"  # how soon an EventSource reconnects after a drop
        catching_up = True
        while True:
            if catching_up:
                batch = await catch_up(last)
                for event in batch.events:
                    if wanted(event):
                        yield sse_event(event)
                last = batch.position
                if batch.more:
                    continue
                catching_up = False
            try:
                async with asyncio.timeout(keepalive_seconds):  # no task per wait
                    await subscription.ready.wait()
            except TimeoutError:
                yield KEEPALIVE
                continue
            events, overflowed = subscription.take()
            if overflowed:
                catching_up = True
                continue
            for event, message in events:
                if event.resource_version > last:
                    if wanted(event):
                        yield message
                    last = event.resource_version
    finally:
        pump.unsubscribe(subscription)
