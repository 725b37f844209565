"""Every Trainport setting, in one pydantic-settings class read from `TRAINPORT_*` variables.

The README's configuration table documents each field; keep the two in step.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_STATE_DIR = Path(".trainport")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SQLITE_FILE = "trainport.db"  # the embedded database, inside the state folder


DEVELOPMENT_SECRET_KEY = "trainport-development-secret-key"  # noqa: S105 (refused in production)
MIN_SECRETS_KEY_CHARS = 32


class StorageBackend(StrEnum):
    LOCAL = "local"
    S3 = "s3"


class SandboxMode(StrEnum):
    AUTO = "auto"  # bubblewrap when it works here, else unsandboxed (and said so)
    BWRAP = "bwrap"  # required: the worker refuses to start without it
    OFF = "off"


class SandboxNetwork(StrEnum):
    ISOLATED = "isolated"  # as root: one network namespace per attempt, only the API forwarded in
    HOST = "host"  # ranks share the host's network (they reach every loopback service)


class LocalImagePolicy(StrEnum):
    WARN = "warn"  # the run goes ahead on the host, marked: the image was not used
    REFUSE = "refuse"  # image runs are refused rather than run without their image


class WorkerPool(StrEnum):
    THREADS = "threads"  # one process; its tasks mostly wait on the database and clusters
    PREFORK = "prefork"  # a child process per concurrent task (~100 MB each)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Runtime configuration. Defaults give the embedded, single-machine platform."""

    model_config = SettingsConfigDict(env_prefix="TRAINPORT_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL: sqlite:///path (embedded) or postgresql+psycopg://...; "
        "empty means sqlite:///<state_dir>/trainport.db",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    async_reads: bool = Field(
        default=True,
        description="PostgreSQL: run reads, and run creation, on asyncpg in the event loop",
    )
    broker_url: str = Field(
        default="", description="Celery broker; empty means the embedded, serverless transport"
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    long_poll_max_seconds: int = Field(default=60, ge=1, le=600)
    key_touch_interval_seconds: int = Field(
        default=60, ge=0, description="How stale api_keys.last_used_at may get before a write"
    )
    log_level: str = Field(
        default="WARNING",
        description="Level of the API, workers and relay: DEBUG, INFO (every request and task), "
        "WARNING (warnings and lifecycle lines), ERROR or CRITICAL",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text (the embedded server) or json: one JSON object per line, for log "
        "shippers in production",
    )
    # Observability: event streams and Prometheus metrics.
    sse_keepalive_seconds: float = Field(
        default=15.0, gt=0, le=300, description="A comment on an idle event stream this often"
    )
    metrics_enabled: bool = Field(
        default=False, description="Serve Prometheus metrics at /metrics on the API"
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="When set, /metrics wants `Authorization: Bearer <token>`"
    )
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve the workers' metrics on this port"
    )
    # Workers and scheduling.
    worker_pool: WorkerPool = Field(
        default=WorkerPool.THREADS,
        description="`celery worker`'s pool: threads (one process) or prefork (one per task)",
    )
    worker_concurrency: int = Field(
        default=4, ge=1, le=64, description="Tasks a worker runs at once (threads or processes)"
    )
    celery_queue: str = Field(default="trainport", description="Celery queue the workers consume")
    local_cpu_slots: int | None = Field(
        default=None, ge=1, description="CPU-only ranks the local cluster runs at once; empty: CPUs"
    )
    local_gpus: dict[str, int] = Field(
        default_factory=dict, description='GPUs of the local cluster per type, e.g. {"a100": 8}'
    )
    local_cluster: bool = Field(
        default=True, description="Whether this worker runs runs on its own machine (`local`)"
    )
    scheduler_starvation_seconds: int = Field(
        default=600, ge=0, description="After this long queued, a run reserves what it waits for"
    )
    fair_share_window_hours: float = Field(
        default=24.0, gt=0, description="How far back GPU usage counts for fair share"
    )
    max_task_deliveries: int = Field(
        default=5, ge=1, description="Unfinished deliveries of one task before the run fails"
    )
    system_retry_limit: int = Field(
        default=3, ge=0, description="Retries after platform failures, apart from max_retries"
    )
    launch_grace_seconds: float = Field(
        default=60.0, gt=0, description="How long a starting run may go unseen before relaunch"
    )
    max_pending_seconds: float = Field(
        default=1800.0,
        ge=0,
        description="How long an attempt may wait to start when its run sets no "
        "scheduling.max_pending (then pending_timeout, a platform failure); 0: no limit",
    )
    reconcile_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often the reconciler compares runs with executors"
    )
    relay_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How often the SQLite relay looks for unsent outbox rows besides the wake-ups"
        " each commit that writes some sends it",
    )
    gc_young_threshold: int = Field(
        default=20_000,
        ge=100,
        description="Net container allocations between the garbage collector's young "
        "collections in the API, worker and relay processes (CPython's default: 700)",
    )
    public_url: str = Field(default="http://127.0.0.1:8000", description="URL runs call back")
    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR, description="Local executor's attempt and checkpoint folders"
    )
    log_dir: Path | None = Field(
        default=None,
        description="Local executor's spool of rank output before it is shipped to the database;"
        " empty means <state_dir>/logs",
    )
    log_max_bytes_per_rank: int = Field(
        default=256 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes of one rank's log of one attempt stored in the database; beyond, one"
        " line says the log was truncated",
    )
    log_flush_seconds: float = Field(
        default=0.2,
        gt=0,
        le=5,
        description="How often new output of a live rank is stored (the follow lag's main part)",
    )
    cancel_grace_seconds: float = Field(
        default=10.0, ge=0, le=3600, description="SIGTERM to SIGKILL delay when stopping a run"
    )
    preemption_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="A preempted run's time between SIGTERM (should_stop() turns true) and"
        " SIGKILL, to save a checkpoint",
    )
    worker_shutdown_grace_seconds: float = Field(
        default=10.0, ge=0, le=600, description="After SIGTERM, how long tasks may finish"
    )
    # The local executor's sandbox.
    sandbox: SandboxMode = Field(
        default=SandboxMode.AUTO,
        description="Local ranks in bubblewrap: auto (when it works), bwrap (required), off",
    )
    sandbox_uid_first: int = Field(
        default=1_000_000, ge=1, description="First uid of the range ranks run as (root only)"
    )
    sandbox_uid_count: int = Field(
        default=65_536, ge=1, le=2**31, description="How many uids the range holds (one per run)"
    )
    sandbox_network: SandboxNetwork = Field(
        default=SandboxNetwork.ISOLATED,
        description="Sandboxed ranks' network: isolated (own namespace per attempt, root) or host",
    )
    installation_id: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?)?$",
        description="Labels (and scopes) this installation's cluster objects; empty: one stored "
        "in the database on first use (core/installation.py)",
    )
    # The Kubernetes executor.
    kubernetes_namespace: str = Field(
        default="trainport-runs", description="Training namespace; `{org}` makes one per org"
    )
    kubernetes_kubeconfig: Path | None = Field(
        default=None, description="kubeconfig file; empty: in-cluster, else ~/.kube/config"
    )
    kubernetes_context: str | None = Field(default=None, description="kubeconfig context")
    kubernetes_default_image: str | None = Field(
        default=None, description="Image for runs whose spec names none"
    )
    kubernetes_gpu_resource: str = Field(
        default="nvidia.com/gpu", description="Extended resource that counts GPUs"
    )
    kubernetes_gpu_type_label: str = Field(
        default="nvidia.com/gpu.product", description="Node label carrying the GPU type"
    )
    kubernetes_tolerations: list[dict[str, str]] = Field(
        default_factory=list, description="Tolerations added to every training pod"
    )
    kubernetes_image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secret names for pulling training images"
    )
    kubernetes_priority_classes: dict[str, str] = Field(
        default_factory=dict, description='PriorityClass per run priority, e.g. {"high": "x"}'
    )
    kubernetes_queue_name: str | None = Field(
        default=None, description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name)"
    )
    kubernetes_rendezvous_port: int = Field(default=29500, ge=1, le=65535)
    kubernetes_checkpoint_claim: str | None = Field(
        default=None, description="PVC mounted at /checkpoints, one sub-folder per run"
    )
    kubernetes_unschedulable_seconds: float = Field(
        default=600.0, gt=0, description="How long a pod may stay unschedulable before failing"
    )
    kubernetes_ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    kubernetes_request_timeout_seconds: float = Field(default=30.0, gt=0)
    kubernetes_watch_timeout_seconds: int = Field(default=300, ge=1, le=3600)
    kubernetes_resync_seconds: float = Field(
        default=300.0, gt=0, description="How often the executor re-lists everything"
    )
    kubernetes_clusters: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Kubernetes clusters this worker runs on: name -> overrides of the "
        'kubernetes_* settings, e.g. {"east": {"context": "east"}}',
    )
    kubernetes_inventory_seconds: float = Field(
        default=60.0, gt=0, description="How often each cluster's nodes are re-read"
    )

    # Training: run tokens, provenance signing and object storage.
    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET_KEY),
        description="Signs run tokens and provenance records; production refuses the default",
    )
    # Provenance signing keys.
    signing_key_file: Path | None = Field(
        default=None,
        description="PEM Ed25519 private key that signs provenance records (mount it into the "
        "API only); empty derives a development key from secret_key",
    )
    checkpoint_hash_max_bytes: int = Field(
        default=2**30,
        ge=0,
        description="At registration the API re-hashes a checkpoint's stored files up to this "
        "many bytes in all (provenance marks them observed); larger ones stay reported",
    )
    verification_key_files: list[Path] = Field(
        default_factory=list,
        description="Extra PEM Ed25519 keys (public or private; files or folders of *.pem) that "
        "still verify records, e.g. keys retired by `python -m api.admin keys rotate`",
    )
    storage_backend: StorageBackend = StorageBackend.LOCAL
    storage_dir: Path | None = Field(
        default=None, description="Local object store root; empty means <state_dir>/storage"
    )
    s3_bucket: str = Field(default="", description="Bucket of the S3 object store")
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. trainport/")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph, R2); empty means AWS"
    )
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_multipart_threshold_bytes: int = Field(default=64 * 2**20, ge=5 * 2**20)
    s3_multipart_chunk_bytes: int = Field(default=16 * 2**20, ge=5 * 2**20)
    presigned_url_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # Runs reach storage through the API.
    run_presigned_url_seconds: int = Field(
        default=300,
        ge=1,
        le=24 * 3600,
        description="Lifetime of URLs presigned for a run's token (at most presigned_url_seconds)",
    )
    max_upload_bytes: int = Field(
        default=10 * 2**30, ge=1024, description="Largest dataset upload through the API"
    )
    # Secrets per org.
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Keys that encrypt run secrets at rest, comma-separated, the newest first; "
        "empty in development: derived from secret_key",
    )
    secrets_key_file: Path | None = Field(
        default=None, description="A file holding secrets_key's keys, one per line"
    )

    # The API's edge: sources, bodies, rate limits.
    dataset_sources: dict[str, list[str]] = Field(
        default_factory=dict,
        description="External dataset sources each org (by id or name) may register, e.g. "
        '{"org_...": ["s3://bucket/prefix/"]}; none by default',
    )
    yaml_max_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest YAML request body (413 beyond)"
    )
    yaml_max_depth: int = Field(default=32, ge=2, description="Deepest nesting of a YAML body")
    yaml_max_nodes: int = Field(
        default=20_000, ge=10, description="Most nodes (scalars, lists, maps) in a YAML body"
    )
    rate_limit_enabled: bool = Field(default=True, description="Whether rate limits apply")
    rate_limit_storage_url: str = Field(
        default="",
        description="redis://... for the counters; empty: the broker if Redis, else memory",
    )
    rate_limit_sync_seconds: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="With Redis: how often each process sums its counts with the others "
        "(0: one Redis round trip per limit and request)",
    )
    rate_limit_per_key: str = Field(
        default="200/second;6000/minute",
        description="Requests per API key or run token (`limits` notation, `;` between)",
    )
    rate_limit_per_org: str = Field(
        default="500/second;15000/minute", description="Requests per organisation"
    )
    rate_limit_failed_auth: str = Field(
        default="50/second;1000/minute",
        description="Failed authentications per client address before 429",
    )
    egress_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks the server may still fetch user-named URLs from "
        '(core/egress.py), e.g. ["10.20.0.0/16"]; none by default',
    )
    # Code that travels with a run: snapshots and git sources.
    max_code_snapshot_bytes: int = Field(
        default=2**30, ge=1024, description="Largest code snapshot (workdir archive) accepted"
    )
    git_allowed_hosts: list[str] = Field(
        default_factory=list,
        description='Git hosts runs may name in `git.url`, e.g. ["github.com"]; "*" for any '
        "public host; none by default (git sources refused)",
    )
    git_allow_file_urls: bool = Field(
        default=False, description="Whether `git.url` may be a file:// path on the server"
    )
    git_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="How long one git command of the server may take"
    )
    local_image_policy: LocalImagePolicy = Field(
        default=LocalImagePolicy.WARN,
        description="A run naming `image` on the local executor: `warn` (runs, marked) or `refuse`",
    )
    kubernetes_code_fetcher_image: str | None = Field(
        default=None,
        description="Image of the init container that fetches a run's code (needs Python 3.11 "
        "and Trainport's `core`); default: the run's own image",
    )
    # Webhooks (issue 19): where deliveries may go, how often they are retried.
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Non-public networks webhook endpoints may still point at, on top of "
        'egress_allowed_networks (internal receivers), e.g. ["10.30.0.0/16"]; none by default',
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="One webhook delivery attempt's time limit"
    )
    webhook_retry_base_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Webhook retries: attempt n waits a random time up to base * 2^n "
        "(full jitter), at most webhook_retry_max_seconds",
    )
    webhook_retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="The longest wait between two attempts of a delivery"
    )
    webhook_retry_for_hours: float = Field(
        default=24.0, ge=0, description="A delivery is retried for this long, then marked failed"
    )
    webhook_disable_after_failures: int = Field(
        default=50,
        ge=1,
        description="An endpoint is disabled after this many consecutive failed attempts "
        "spread over at least webhook_disable_after_hours",
    )
    webhook_disable_after_hours: float = Field(
        default=24.0, ge=0, description="See webhook_disable_after_failures"
    )
    webhook_secret_grace_hours: float = Field(
        default=24.0,
        ge=0,
        description="After a secret rotation the previous secret also signs for this long",
    )
    webhook_concurrency: int = Field(
        default=64, ge=1, le=1024, description="Webhook requests in flight per worker task"
    )
    webhook_batch: int = Field(
        default=256, ge=1, le=5000, description="Deliveries a worker claims per round"
    )
    webhook_log_retention_days: float = Field(
        default=30.0, gt=0, description="Finished webhook deliveries are kept this long"
    )
    webhook_sweep_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often beat asks for due webhook deliveries (retries, lost workers)",
    )
    gpu_hour_rates: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="What one GPU-hour costs per GPU type: `H100=2.5,A100=1.2` or JSON; "
        "`*` prices every type not named; empty: usage has GPU-hours and no cost",
    )
    currency: str = Field(
        default="USD", min_length=1, max_length=8, description="The currency of every cost"
    )
    max_waiting_runs_per_org: int = Field(
        default=100_000, ge=1, description="Pending + queued runs an org may have (429 beyond)"
    )

    @field_validator("gpu_hour_rates", mode="before")
    @classmethod
    def _rates_notation(cls, value: Any) -> Any:
        # `H100=2.5,A100=1.2` (the README's form) or a JSON object; keys match any case.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                value = json.loads(text)
            else:
                pairs = [part.partition("=") for part in text.split(",") if part.strip()]
                if any(not sep or not name.strip() for name, sep, _ in pairs):
                    raise ValueError(f"{value!r} is not TYPE=RATE,TYPE=RATE (e.g. H100=2.5)")
                value = {name.strip(): rate.strip() for name, _, rate in pairs}
        if isinstance(value, dict):
            rates = {str(k).strip().lower(): float(v) for k, v in value.items()}
            if any(rate < 0 for rate in rates.values()):
                raise ValueError("a GPU-hour rate cannot be negative")
            return rates
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("rate_limit_per_key", "rate_limit_per_org", "rate_limit_failed_auth")
    @classmethod
    def _limits_notation(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            message = f"{value!r} is not in `limits` notation, e.g. 10/second;100/minute"
            raise ValueError(message) from None
        return value

    @model_validator(mode="after")
    def _database_follows_the_state_dir(self) -> Settings:
        # Defined first, so the checks below see the resolved URL. One rule for every process
        # (API, workers, `api.admin`): with no URL given, the database lives in the state folder.
        if not self.database_url:
            self.database_url = embedded_database_url(self.state_dir)
        return self

    @model_validator(mode="after")
    def _production_needs_a_server_database(self) -> Settings:
        # SQLite is for one machine; in production several processes share the database.
        if self.environment is Environment.PRODUCTION and self.is_sqlite:
            raise ValueError("TRAINPORT_DATABASE_URL must point at PostgreSQL in production")
        return self

    @model_validator(mode="after")
    def _production_needs_a_secret_key(self) -> Settings:
        if (
            self.environment is Environment.PRODUCTION
            and self.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY
        ):
            raise ValueError("TRAINPORT_SECRET_KEY must be set (not the default) in production")
        return self

    @model_validator(mode="after")
    def _secrets_keys_are_usable(self) -> Settings:
        if self.secrets_key is not None and self.secrets_key_file is not None:
            raise ValueError("set TRAINPORT_SECRETS_KEY or TRAINPORT_SECRETS_KEY_FILE, not both")
        keys = self.secrets_keys()
        if self.environment is Environment.PRODUCTION and not keys:
            raise ValueError(
                "TRAINPORT_SECRETS_KEY or TRAINPORT_SECRETS_KEY_FILE must be set in production "
                "(it encrypts run secrets at rest)"
            )
        if any(len(key) < MIN_SECRETS_KEY_CHARS for key in keys):
            raise ValueError(
                f"every run-secrets key needs at least {MIN_SECRETS_KEY_CHARS} characters "
                "(e.g. `openssl rand -base64 32`)"
            )
        return self

    def secrets_keys(self) -> list[str]:
        """The configured run-secrets keys, newest first; empty when none is configured."""
        if self.secrets_key_file is not None:
            try:
                raw = self.secrets_key_file.read_text()
            except OSError as exc:
                raise ValueError(f"TRAINPORT_SECRETS_KEY_FILE cannot be read: {exc}") from None
            return [line.strip() for line in raw.splitlines() if line.strip()]
        if self.secrets_key is None:
            return []
        return [
            part.strip() for part in self.secrets_key.get_secret_value().split(",") if part.strip()
        ]

    @model_validator(mode="after")
    def _kubernetes_clusters_override_known_settings(self) -> Settings:
        for name, overrides in self.kubernetes_clusters.items():
            if not CLUSTER_NAME.fullmatch(name) or name == "local":
                raise ValueError(
                    f"TRAINPORT_KUBERNETES_CLUSTERS: {name!r} is not a cluster name "
                    "(lower-case letters, digits and '-', at most 40; not 'local')"
                )
            unknown = sorted(set(overrides) - PER_CLUSTER_SETTINGS)
            if unknown:
                raise ValueError(
                    f"TRAINPORT_KUBERNETES_CLUSTERS[{name!r}]: unknown settings {unknown}; "
                    f"a cluster may set {sorted(PER_CLUSTER_SETTINGS)}"
                )
        return self

    def for_kubernetes_cluster(self, name: str) -> Settings:
        """These settings with cluster `name`'s `kubernetes_*` overrides applied (validated)."""
        overrides = {f"kubernetes_{k}": v for k, v in self.kubernetes_clusters[name].items()}
        values = {field: getattr(self, field) for field in type(self).model_fields}
        return type(self).model_validate({**values, **overrides, "kubernetes_clusters": {}})

    @property
    def storage_root(self) -> Path:
        return self.storage_dir or self.state_dir / "storage"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def log_root(self) -> Path:
        return self.log_dir or self.state_dir / "logs"


def embedded_database_url(state_dir: Path) -> str:
    """The SQLite database of the embedded platform whose state folder is `state_dir`."""
    return f"sqlite:///{state_dir / SQLITE_FILE}"


CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
# What one Kubernetes cluster may set apart from the others (the rest is the worker's own).
PER_CLUSTER_SETTINGS = frozenset(
    name.removeprefix("kubernetes_")
    for name in Settings.model_fields
    if name.startswith("kubernetes_")
    and name not in {"kubernetes_clusters", "kubernetes_inventory_seconds"}
)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
