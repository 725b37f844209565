"""The settings that shape an attempt's manifests, read once from core.settings.

The Kubernetes executor builds its `ClusterConfig` here (workers/executors/kubernetes), and so
does `POST /v1/runs/plan` (core/scheduling/preflight.py): one function, so the plan renders what
the executor would apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.settings import Settings

DEFAULT_INSTALLATION = "default"


@dataclass(frozen=True)
class ClusterConfig:
    """The settings that shape manifests (see core.settings, `kubernetes_*`)."""

    namespace: str = "trainport-runs"
    default_image: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    gpu_type_label: str = "nvidia.com/gpu.product"
    tolerations: tuple[dict[str, str], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    priority_classes: dict[str, str] = field(default_factory=dict)
    queue_name: str | None = None
    rendezvous_port: int = 29500
    checkpoint_claim: str | None = None
    code_fetcher_image: str | None = None  # default: the run's own image
    ttl_seconds_after_finished: int = 3600
    installation: str = DEFAULT_INSTALLATION  # labels every object; see core.installation


def cluster_config(settings: Settings, installation: str = DEFAULT_INSTALLATION) -> ClusterConfig:
    """The manifests' settings of one cluster: `settings` with that cluster's overrides applied
    (`Settings.for_kubernetes_cluster`), labelled with this installation's id."""
    return ClusterConfig(
        namespace=settings.kubernetes_namespace,
        default_image=settings.kubernetes_default_image,
        gpu_resource=settings.kubernetes_gpu_resource,
        gpu_type_label=settings.kubernetes_gpu_type_label,
        tolerations=tuple(settings.kubernetes_tolerations),
        image_pull_secrets=tuple(settings.kubernetes_image_pull_secrets),
        priority_classes=dict(settings.kubernetes_priority_classes),
        queue_name=settings.kubernetes_queue_name,
        rendezvous_port=settings.kubernetes_rendezvous_port,
        checkpoint_claim=settings.kubernetes_checkpoint_claim,
        code_fetcher_image=settings.kubernetes_code_fetcher_image,
        ttl_seconds_after_finished=settings.kubernetes_ttl_seconds_after_finished,
        installation=installation,
    )
