"""Building the official client: in-cluster config or a kubeconfig and context, with timeouts.

Every call the executor makes passes `request_timeout` (`_request_timeout`) and every watch a
server-side `timeoutSeconds`, so no thread ever waits on the cluster forever.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k
from kubernetes import config as kube_config
from kubernetes.watch.watch import iter_resp_lines

from core.settings import Settings


@dataclass(frozen=True)
class Apis:
    """The API groups the executor uses, sharing one connection pool."""

    core: k.CoreV1Api
    batch: k.BatchV1Api
    request_timeout: float
    watch_timeout: int
    version: k.VersionApi

    @classmethod
    def from_client(
        cls, api_client: k.ApiClient, request_timeout: float = 30.0, watch_timeout: int = 300
    ) -> Apis:
        return cls(
            k.CoreV1Api(api_client),
            k.BatchV1Api(api_client),
            request_timeout,
            watch_timeout,
            k.VersionApi(api_client),
        )

    def server_version(self) -> str:
        """The server's gitVersion (`/version`), e.g. v1.31.2."""
        return str(
            read_json(self.version.get_code, _request_timeout=self.request_timeout)["gitVersion"]
        )


MAX_LOG_FOLLOWERS = 256  # open pods/log streams per worker; the rest start on a later observe()
# Every follower holds a connection while its pod runs, beside the two watches and the calls a
# launch or a cleanup makes; a smaller pool discards a connection (and warns) at every return.
CONNECTIONS = MAX_LOG_FOLLOWERS + 16


def api_client(kubeconfig: Path | None = None, context: str | None = None) -> k.ApiClient:
    """In-cluster credentials when running in a pod and no kubeconfig is named, else kubeconfig."""
    configuration = k.Configuration()
    configuration.connection_pool_maxsize = CONNECTIONS
    if kubeconfig is None and context is None:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
            return k.ApiClient(configuration)
        except kube_config.ConfigException:
            pass  # not in a pod: fall back to ~/.kube/config
    kube_config.load_kube_config(
        config_file=str(kubeconfig) if kubeconfig else None,
        context=context,
        client_configuration=configuration,
    )
    return k.ApiClient(configuration)


def apis_from_settings(settings: Settings) -> Apis:
    return Apis.from_client(
        api_client(settings.kubernetes_kubeconfig, settings.kubernetes_context),
        settings.kubernetes_request_timeout_seconds,
        settings.kubernetes_watch_timeout_seconds,
    )


def call_raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The undecoded HTTP response of a client call (JSON parsing is cheaper than models)."""
    return call(*args, _preload_content=False, **kwargs)


def read_json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    response = call_raw(call, *args, **kwargs)
    document: dict[str, Any] = json.loads(response.data)
    return document


def response_lines(response: Any) -> Iterator[str]:
    """Lines of a streamed response (watch events, log lines) as they arrive."""
    lines: Iterator[str] = iter_resp_lines(response)
    return lines
