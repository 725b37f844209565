"""`run.should_stop()`: SIGTERM (cancel, preemption, eviction) turns into a flag.

The handler only sets the flag, so the training loop decides when to stop: usually right after
the current step, with a checkpoint saved inside the platform's grace period (after which the
platform sends SIGKILL). Handlers can only be installed from the main thread; elsewhere the
flag still works through `request()`.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopSignal:
    """A flag raised by SIGTERM, or by `request()`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_number: int | None = None
        self._previous: Any = None
        self._installed = False

    def install(self, signum: int = signal.SIGTERM) -> bool:
        """Catch `signum`; False when this is not the main thread (nothing installed)."""
        if self._installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        self._previous = signal.signal(signum, self._handle)
        self._signum, self._installed = signum, True
        return True

    def uninstall(self) -> None:
        """Put back the handler that was there before `install()`."""
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(self._signum, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_number = signum
        self._event.set()

    def request(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()
