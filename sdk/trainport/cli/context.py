"""What every CLI command shares: the global options, the client built from them, the consoles,
and the exit codes the CLI promises.

Exit codes: 0 success (a followed run succeeded), 1 the run failed or was cancelled, 2 usage or
configuration error (bad flags, unreadable run file, no API key), 3 API or network error,
130 interrupted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import IntEnum

from rich.console import Console

from trainport.client import Client


class ExitCode(IntEnum):
    OK = 0
    RUN_FAILED = 1
    USAGE = 2
    API_ERROR = 3
    INTERRUPTED = 130


def _console(stream_is_tty: bool, *, stderr: bool = False) -> Console:
    # Piped output is not wrapped at 80 columns: ids and names must survive `| grep`.
    return Console(stderr=stderr, width=None if stream_is_tty else 200, highlight=False)


out = _console(sys.stdout.isatty())
err = _console(sys.stderr.isatty(), stderr=True)


@dataclass
class CLIState:
    """The global options (`trainport --profile P --api-url U --api-key K --debug ...`)."""

    profile: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    debug: bool = False
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """The SDK client, built on first use so `--help` and usage errors need no key."""
        if self._client is None:
            self._client = Client(base_url=self.api_url, api_key=self.api_key, profile=self.profile)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# One CLI invocation is one process; main() reads this to decide whether to show tracebacks.
state = CLIState()
