"""The shim's forwarder: connections a sandboxed rank makes to the API reach the real API.

The executor opens a listening socket inside the attempt's network namespace (local_netns.py)
and passes it to each rank's shim; the shim itself stays in the host's namespace, so for every
connection it accepts there it connects out to the endpoint's real address and copies bytes
both ways until either side closes. Nothing is parsed: TLS, HTTP/1.1 keep-alive and long polls
pass through untouched. Standard library only: it runs inside the shim.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

CONNECT_TIMEOUT_SECONDS = 10.0
CHUNK_BYTES = 64 * 1024


def serve(listener_fd: int, host: str, port: int, note: Callable[[str], object]) -> None:
    """Accept on the inherited listener in a daemon thread, for the rest of the shim's life."""
    listener = socket.socket(fileno=listener_fd)
    thread = threading.Thread(
        target=_accept, args=(listener, host, port, note), name=f"forward-{port}", daemon=True
    )
    thread.start()


def _accept(listener: socket.socket, host: str, port: int, note: Callable[[str], object]) -> None:
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return  # closed under us: the shim is ending
        threading.Thread(target=_connect, args=(inside, host, port, note), daemon=True).start()


def _connect(inside: socket.socket, host: str, port: int, note: Callable[[str], object]) -> None:
    try:
        outside = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS)
    except OSError as exc:
        note(f"cannot forward a connection to {host}:{port}: {exc}")
        inside.close()
        return
    outside.settimeout(None)
    back = threading.Thread(target=_pump, args=(outside, inside), daemon=True)
    back.start()
    _pump(inside, outside)
    back.join()  # both directions ended: the connection is over
    inside.close()
    outside.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end `sink`'s writing side."""
    try:
        while data := source.recv(CHUNK_BYTES):
            sink.sendall(data)
    except OSError:
        pass  # a reset on either side ends this direction
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        source.shutdown(socket.SHUT_RD)
