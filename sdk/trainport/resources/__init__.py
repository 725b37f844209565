"""The API's resources, one module each; every resource has a sync and an async twin."""

from trainport.resources.api_keys import ApiKeys, AsyncApiKeys
from trainport.resources.code import AsyncCode, Code, CodeUpload
from trainport.resources.datasets import AsyncDatasets, Datasets
from trainport.resources.projects import AsyncProjects, Projects
from trainport.resources.provenance import AsyncProvenanceResource, ProvenanceResource
from trainport.resources.runs import AsyncRuns, Runs
from trainport.resources.secrets import AsyncSecrets, Secrets
from trainport.resources.webhooks import AsyncWebhooks, Webhooks

__all__ = [
    "ApiKeys",
    "AsyncApiKeys",
    "AsyncCode",
    "AsyncDatasets",
    "AsyncProjects",
    "AsyncProvenanceResource",
    "AsyncRuns",
    "AsyncSecrets",
    "AsyncWebhooks",
    "Code",
    "CodeUpload",
    "Datasets",
    "Projects",
    "ProvenanceResource",
    "Runs",
    "Secrets",
    "Webhooks",
]
