"""Trainport's Python SDK: `trainport.Client` / `trainport.AsyncClient`, run specs, errors.

import trainport

client = trainport.Client()
run = client.runs.create(trainport.RunSpec.from_yaml("run.yaml"))
print(client.runs.wait(run).status)
"""

from trainport import webhooks
from trainport._version import __version__
from trainport.client import AsyncClient, Client
from trainport.errors import (
    AmbiguousRunName,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    Conflict,
    FieldError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    RateLimited,
    RunNameError,
    RunNameNotFound,
    ServerError,
    TrainportError,
    ValidationError,
    WaitTimeout,
)
from trainport.models import (
    TERMINAL_STATUSES,
    ApiKey,
    ApiKeyCreated,
    Attempt,
    LogLine,
    Me,
    Organization,
    Progress,
    Project,
    Run,
    RunEvent,
    RunPlan,
    RunStatus,
    RunUsage,
    Secret,
)
from trainport.pagination import AsyncPage, AsyncPageRequest, SyncPage
from trainport.resources.provenance import checkpoint_claim, verify_offline
from trainport.retries import RetryPolicy
from trainport.spec import RunSpec, SpecError
from trainport.training_models import (
    Checkpoint,
    Dataset,
    DatasetVersion,
    Manifest,
    Metrics,
    MetricSeries,
    OutputFile,
    Provenance,
    Verdict,
)

__all__ = [
    "TERMINAL_STATUSES",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousRunName",
    "ApiKey",
    "ApiKeyCreated",
    "AsyncClient",
    "AsyncPage",
    "AsyncPageRequest",
    "Attempt",
    "AuthenticationError",
    "BadRequest",
    "Checkpoint",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Dataset",
    "DatasetVersion",
    "FieldError",
    "LogLine",
    "Manifest",
    "Me",
    "MetricSeries",
    "Metrics",
    "NotFound",
    "Organization",
    "OutputFile",
    "PermissionDenied",
    "PreconditionFailed",
    "Progress",
    "Project",
    "Provenance",
    "QuotaExceeded",
    "RateLimited",
    "RetryPolicy",
    "Run",
    "RunEvent",
    "RunNameError",
    "RunNameNotFound",
    "RunPlan",
    "RunSpec",
    "RunStatus",
    "RunUsage",
    "Secret",
    "ServerError",
    "SpecError",
    "SyncPage",
    "TrainportError",
    "ValidationError",
    "Verdict",
    "WaitTimeout",
    "__version__",
    "checkpoint_claim",
    "verify_offline",
    "webhooks",
]
