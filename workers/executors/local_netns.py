"""One network namespace per sandboxed attempt, with only the platform's endpoints forwarded in.

A sandboxed rank shares nothing of the host's network: its attempt has a named namespace (as
`ip netns add tp-<hash of run id and attempt>` makes one, kept under /run/netns so a restarted
worker finds it by name) holding only a loopback interface, which all the attempt's ranks share, so
they still rendezvous on 127.0.0.1:MASTER_PORT. The rank enters it through `nsenter --net=`
before bwrap; the name is derived, never stored, so `cleanup` (of this worker or a restarted
one) removes it, idempotently.

The API (and the S3 endpoint, when storage is S3-compatible at a set URL) is reached through
listening sockets the executor opens *inside* the namespace, on 127.0.0.1 at the endpoint's
port, and hands to each rank's shim, which stays in the host's namespace and pumps every
accepted connection to the real endpoint (local_forward.py). A URL that names its host keeps
the name: the rank's /etc/hosts maps it to 127.0.0.1, so TLS still checks the real name; a URL
with an IP address is rewritten to 127.0.0.1 (docs/security-sandbox.md).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import hashlib
import ipaddress
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_BIND, MNT_DETACH = 4096, 2  # sys/mount.h
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # linux/sockios.h, linux/if.h
IFREQ = "16sh22x"  # struct ifreq: the interface's name, then ifr_flags; 40 bytes
IP_TIMEOUT_SECONDS = 10.0
LISTEN_BACKLOG = 128
DEFAULT_PORTS = {"http": 80, "https": 443}


class NetworkUnavailable(Exception):
    """The attempt's namespace could not be made or entered; the launch is refused."""


@dataclass(frozen=True)
class Endpoint:
    """A platform service a rank may reach: `host:port` outside, 127.0.0.1:`port` inside."""

    host: str
    port: int

    @property
    def named(self) -> bool:
        """Whether the URL names the host (kept inside through /etc/hosts) or gives an IP."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False


def namespace_name(run_id: str, attempt: int) -> str:
    """The attempt's namespace: stable, short (ip's names are at most 255 bytes), safe."""
    return "tp-" + hashlib.sha256(f"{run_id}:{attempt}".encode()).hexdigest()[:16]


def create(ip: str, name: str) -> Path:
    """The attempt's namespace (loopback comes up in `listen_inside`); an existing one is
    adopted. Made as `ip netns add` makes it (a file under /run/netns with a new namespace
    bound on it), by the calls themselves: starting `ip` cost ~2.6 ms of CPU and 5.5 ms before
    every sandboxed rank could start (issue 17). Where the calls are refused, `ip` is asked."""
    path = NETNS_DIR / name
    if not path.exists():
        try:
            _add(path)
        except OSError:
            _ip(ip, "netns", "add", name)
    return path


def remove(ip: str, name: str) -> None:
    """Delete the attempt's namespace if it exists (it lives on while a process is in it), as
    `ip netns delete` does: unbind it (lazily), then remove its file."""
    path = NETNS_DIR / name
    if not path.exists():
        return
    try:
        _call("umount2", str(path).encode(), MNT_DETACH)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not bound (a half-made one); just remove it
            _ip(ip, "netns", "delete", name)
            return
    path.unlink(missing_ok=True)


def _add(path: Path) -> None:
    NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        return  # made meanwhile: launches of one attempt hold its lock, so it is complete

    def unshare_and_bind() -> None:  # a namespace is per thread: this one's, kept by the bind
        _call("unshare", CLONE_NEWNET)
        _call("mount", b"/proc/thread-self/ns/net", str(path).encode(), None, MS_BIND, None)

    try:
        _in_a_thread(unshare_and_bind, "netns-add")
    except OSError:
        path.unlink(missing_ok=True)
        raise


def _in_a_thread(step: Callable[[], None], name: str) -> None:
    """Run `step` in a short-lived thread of its own (namespace calls change only the calling
    thread, which then ends), raising the OSError it raised."""
    failed: list[OSError] = []

    def guarded() -> None:
        try:
            step()
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=guarded, name=name)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args: object) -> None:
    """A libc call that returns -1 and sets errno on failure (Python 3.11 wraps none of these:
    setns, unshare, mount, umount2)."""
    if getattr(_libc(), name)(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    return Endpoint(
        parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    )


def inside_url(url: str) -> str:
    """The URL a rank uses for `url`: the same name (mapped to 127.0.0.1 inside), or 127.0.0.1
    in place of an IP address."""
    parts = urlsplit(url)
    if endpoint(url).named:
        return url
    where = f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"
    return urlunsplit(parts._replace(netloc=where))


def hosts_file(endpoints: list[Endpoint], path: Path) -> Path:
    """The rank's /etc/hosts: localhost and every named endpoint at 127.0.0.1 (there is no
    other address inside, and no DNS)."""
    names = sorted({"localhost", *(e.host for e in endpoints if e.named)})
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temp.write_text("".join(f"127.0.0.1\t{name}\n" for name in names))
    temp.chmod(0o644)
    os.replace(temp, path)  # a new file: running ranks keep the one bound at their start
    return path


def listen_inside(namespace: Path, ports: list[int]) -> list[socket.socket]:
    """Loopback up, and listening sockets on 127.0.0.1:`port`, inside `namespace`, from a
    short-lived thread that enters it (setns changes only the calling thread; a socket stays in the
    namespace it was made in). SO_REUSEPORT: every shim of the attempt, also one started later
    by a restarted worker, listens on the same port; the kernel lets only sockets of the same
    uid share it, so a rank (another uid) cannot."""
    made: list[socket.socket] = []

    def enter_and_listen() -> None:
        _enter(namespace)
        _loopback_up()
        made.extend(_listener(port) for port in ports)

    try:
        _in_a_thread(enter_and_listen, "netns-listen")
    except OSError as exc:
        for sock in made:
            sock.close()
        raise NetworkUnavailable(f"cannot listen inside {namespace}: {exc}") from exc
    return made


def _enter(namespace: Path) -> None:
    fd = os.open(namespace, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _call("setns", fd, CLONE_NEWNET)
    finally:
        os.close(fd)


def _loopback_up() -> None:
    """`ip link set lo up` in the calling thread's namespace, without starting `ip`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        answer = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0))
        flags = struct.unpack(IFREQ, answer)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def _listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(LISTEN_BACKLOG)
    return sock


def _ip(ip: str, *args: str) -> None:
    try:
        subprocess.run(  # noqa: S603 - our arguments, ip found on PATH at start
            [ip, *args], check=True, capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS
        )
    except subprocess.CalledProcessError as exc:
        said = exc.stderr.strip() or f"exit code {exc.returncode}"
        raise NetworkUnavailable(f"`ip {' '.join(args)}` failed: {said}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkUnavailable(f"`ip {' '.join(args)}` failed: {exc}") from exc
