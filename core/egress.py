"""Outbound HTTP to a URL a user named: only to public addresses (SSRF rules).

Today the server fetches no user-supplied URL (its S3 endpoint is the operator's, and dataset
sources go through core/datasets/sources.py); whatever comes next (dataset URLs) fetches through
`fetch` here. Webhook deliveries (workers/webhooks.py) keep their connections open for speed,
so they apply `permitted` at each new connection instead. The rules:

- only `http` and `https`, no user-info in the URL;
- the host is resolved, and every address it resolves to must be public: loopback, private,
  link-local, carrier-grade NAT, multicast, reserved, unspecified and cloud metadata addresses
  (IPv4, IPv6 and IPv4-mapped IPv6 alike) are refused, unless inside a network the operator
  allowed (`TRAINPORT_EGRESS_ALLOWED_NETWORKS`);
- the connection goes to the address that was checked (no second lookup an attacker's DNS
  could answer differently), with the URL's host name kept for `Host` and TLS;
- redirects are followed by hand, each target checked by the same rules, at most
  `max_redirects` of them.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from core.errors import TrainportError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Metadata services some clouds put on addresses `is_global` alone would not catch.
METADATA = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "100.100.100.200/32", "fd00:ec2::/32", "192.0.0.192/32")
)
REDIRECTS = {301, 302, 303, 307, 308}


class EgressRefused(TrainportError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, 422, "destination_not_allowed", "Destination not allowed")


@dataclass(frozen=True)
class EgressPolicy:
    """Where the server may connect on a user's behalf; `allowed`: the operator's exceptions."""

    allowed: tuple[Network, ...] = ()
    timeout_s: float = 10.0
    max_redirects: int = 3
    max_bytes: int = 1 << 20

    @classmethod
    def allowing(cls, networks: Iterable[str], **options: float) -> EgressPolicy:
        allowed = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        return cls(allowed, **options)  # type: ignore[arg-type]

    def permits(self, address: Address) -> bool:
        if any(address in network for network in self.allowed):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return self.permits(address.ipv4_mapped)
        public = address.is_global and not address.is_multicast
        return public and not any(address in m for m in METADATA)


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str  # after redirects
    redirects: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: Address


def vet(url: str, policy: EgressPolicy) -> Target:
    """Where `url` would connect, if the policy permits every address its host resolves to."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise EgressRefused(f"{url!r}: only http:// and https:// URLs with a host are fetched.")
    if parts.username is not None or parts.password is not None:
        raise EgressRefused(f"{url!r}: URLs with user names or passwords are not fetched.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = permitted(url, resolve(parts.hostname, port), policy)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, address)


def permitted(what: str, addresses: list[Address], policy: EgressPolicy) -> Address:
    """The address to connect to, if the policy permits every one `what` resolved to."""
    refused = [a for a in addresses if not policy.permits(a)]
    if refused or not addresses:
        raise EgressRefused(
            f"{what!r} resolves to {', '.join(map(str, refused)) or 'nothing'}: not a public "
            "address (loopback, private, link-local and metadata addresses are never fetched)."
        )
    return addresses[0]


def resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def fetch(
    url: str,
    policy: EgressPolicy,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Fetched:
    """`url` fetched by the rules above; redirects followed, each one checked again."""
    followed: list[str] = []
    while True:
        target = vet(url, policy)
        status, answer_headers, answer = _exchange(target, policy, method, body, headers or {})
        location = answer_headers.get("location")
        if status not in REDIRECTS or location is None:
            return Fetched(status, answer_headers, answer, url, followed)
        if len(followed) >= policy.max_redirects:
            raise EgressRefused(f"{url!r}: more than {policy.max_redirects} redirects.")
        url = urljoin(url, location)
        followed.append(url)
        if status == 303:
            method, body = "GET", None


def _exchange(
    target: Target,
    policy: EgressPolicy,
    method: str,
    body: bytes | None,
    headers: Mapping[str, str],
) -> tuple[int, dict[str, str], bytes]:
    connection = _connection(target, policy)
    try:
        connection.request(method, target.path, body=body, headers={"Host": target.host, **headers})
        response = connection.getresponse()
        answer = response.read(policy.max_bytes + 1)
        if len(answer) > policy.max_bytes:
            raise EgressRefused(f"The answer is larger than {policy.max_bytes} bytes.")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
    finally:
        connection.close()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the vetted address, whatever the host name would resolve to now."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = str(target.address)

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def connect(self) -> None:
        super().connect()
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)


def _connection(target: Target, policy: EgressPolicy) -> http.client.HTTPConnection:
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    return kind(target, policy.timeout_s)
