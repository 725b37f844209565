"""Reading a run's log stream, and resuming it after a dropped connection without a repeated or
lost line.

The server sends one rank's log of one attempt as NDJSON lines `{"time", "stream", "text"}`
(or as text `<time> <stream> <text>`), with the attempt it chose in `X-Trainport-Attempt`.
A log only grows, and each line carries a microsecond timestamp, so after a broken connection
the follower asks for the same attempt from the start and skips what it already handed out:
every line older than the last one seen, and as many lines stamped with that same time as it
already saw. Dropped connections are retried with the client's backoff; a run of failures
with no new line in between ends with the connection error.

Following a run that has no log yet (just created, still queued) waits for it, as
`trainport run --follow` does: on a 404 the follower long-polls the run until it changes (a
short window once an attempt is starting, when the log is about to appear) and asks again. A
run that ended without a log for that attempt raises NotFound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from trainport._http import APIRequest
from trainport.errors import NotFound
from trainport.models import LogLine, Run
from trainport.resources._run_calls import LONG_POLL_SECONDS, RunRef, run_path
from trainport.retries import RetryPolicy

NDJSON = "application/x-ndjson"
STREAMS = frozenset({"stdout", "stderr", "system"})
LOG_APPEARS_SECONDS = 1  # an attempt is starting: its log file appears any moment


def parse_line(raw: str, content_type: str) -> LogLine:
    """One line of the body: an NDJSON object, or the stored text form."""
    if NDJSON in content_type:
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        if isinstance(document, dict):
            return LogLine.model_validate(document)
    time, _, rest = raw.partition(" ")
    stream, _, text = rest.partition(" ")
    if stream not in STREAMS:
        return LogLine(text=raw)
    return LogLine(time=time, stream=stream, text=text)


@dataclass
class LogFollower:
    """The state of one `runs.logs()` iteration across reconnects."""

    run: RunRef
    attempt: int | None
    rank: int | None
    tail: int | None
    follow: bool
    policy: RetryPolicy
    last_time: str | None = None
    seen_at_last_time: int = 0
    failures: int = 0
    handed_out: int = 0
    _resume_time: str | None = None
    _resume_skip: int = 0
    _saw_it_ended: bool = False

    def request(self) -> APIRequest:
        resuming = self.handed_out > 0
        params = {
            "attempt": self.attempt,
            "rank": self.rank,
            # Resuming reads the attempt from its start and skips what was already seen.
            "tail": None if resuming else self.tail,
            "follow": self.follow or None,
        }
        headers = {"Accept": f"{NDJSON}, text/plain;q=0.5"}
        # A followed log may stay quiet for minutes (a long step): no read timeout then.
        timeout = httpx.Timeout(None, connect=10.0) if self.follow else None
        return APIRequest(
            "GET", run_path(self.run, "/logs"), params=params, headers=headers, timeout=timeout
        )

    def connected(self, response: httpx.Response) -> None:
        """Pin the attempt the server chose, so a reconnect reads the same log."""
        chosen = response.headers.get("x-trainport-attempt", "")
        if self.attempt is None and chosen.isdigit():
            self.attempt = int(chosen)
        self._resume_time, self._resume_skip = self.last_time, self.seen_at_last_time

    def accept(self, raw: str, content_type: str) -> LogLine | None:
        """The line to hand out, or None for one already handed out before a reconnect."""
        line = parse_line(raw, content_type)
        if self._already_seen(line):
            return None
        self.failures = 0
        self.handed_out += 1
        if line.time and line.time == self.last_time:
            self.seen_at_last_time += 1
        elif line.time:
            self.last_time, self.seen_at_last_time = line.time, 1
        return line.model_copy(update={"attempt": self.attempt, "rank": self.rank or 0})

    def _already_seen(self, line: LogLine) -> bool:
        if self._resume_time is None:
            return False
        if line.time < self._resume_time or (
            line.time == self._resume_time and self._resume_skip > 0
        ):
            if line.time == self._resume_time:
                self._resume_skip -= 1
            return True
        self._resume_time = None  # past the resume point: everything from here on is new
        return False

    def wait_for_log(self, run: Run, missing: NotFound) -> int:
        """After a 404: how long to long-poll the run before asking again; raises `missing`
        when no log is coming (not following, already streaming, or the run has ended)."""
        if not self.follow or self.handed_out:
            raise missing
        if run.is_terminal:
            if self._saw_it_ended or run.attempt == 0:
                raise missing
            self._saw_it_ended = True
            return 0  # it ended meanwhile; its log is durable: ask once more at once
        started = run.attempt > 0 and run.status not in ("pending", "queued")
        return LOG_APPEARS_SECONDS if started else LONG_POLL_SECONDS

    def reconnect_delay(self) -> float | None:
        """Seconds to wait before reconnecting after the stream broke; None to give up."""
        if self.handed_out and self.last_time is None:
            return None  # lines without timestamps: no safe place to resume from
        delay = self.policy.next_delay(self.failures, httpx.ReadError("stream broken"))
        self.failures += 1
        return delay
