"""Names, label keys and selectors of everything the Kubernetes executor creates, in one place.

Names are deterministic from (run id, attempt), so a repeated launch meets its own objects (409)
instead of creating a second copy. Every name is a DNS-1123 label (and a DNS-1035 one, as a
Service needs) short enough that the Indexed Job's pod hostnames `<job>-<index>` stay within 63
characters. Label values are taken from ids only after they pass the label syntax; anything else
becomes a hash, so a label can never be invalid or say something the id did not.
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
MANAGED_BY = "trainport"
INSTALLATION_KEY = "trainport.dev/installation"  # which Trainport made it (see core.installation)
RUN_ID_KEY = "trainport.dev/run-id"
ORG_KEY = "trainport.dev/org"
PROJECT_KEY = "trainport.dev/project"
ATTEMPT_KEY = "trainport.dev/attempt"
SPEC_HASH_KEY = "trainport.dev/spec-hash"
QUEUE_KEY = "kueue.x-k8s.io/queue-name"
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"
MAX_NAME = 63
MAX_INDEX_DIGITS = 3  # compute.nodes is at most 512
_NAME_PREFIX = "tp-"
ORG_SECRET_PREFIX = "trainport-secrets-"  # noqa: S105 - a name prefix, not a secret
_BASE_LIMIT = 40
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?)?$")
_DNS_LABEL_BODY = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9]+")
# Label key prefixes a user's labels may not set: the cluster's and its controllers'.
_FOREIGN_PREFIXES = ("kubernetes.io", "k8s.io", "x-k8s.io", "trainport.dev")


def _digest(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _name_base(run_id: str) -> str:
    """The run id as a DNS label body, with a hash wherever the mapping could collide."""
    cleaned = _NOT_DNS.sub("-", run_id.lower()).strip("-")
    if cleaned == run_id.replace("_", "-") and len(cleaned) <= _BASE_LIMIT and cleaned:
        return cleaned
    return f"{cleaned[: _BASE_LIMIT - 11].strip('-') or 'run'}-{_digest(run_id)}"


def attempt_name(run_id: str, attempt: int) -> str:
    """The Job's and its headless Service's name: `tp-<run>-<attempt>`."""
    name = f"{_NAME_PREFIX}{_name_base(run_id)}-{attempt}"
    assert len(name) + 1 + MAX_INDEX_DIGITS <= MAX_NAME, name
    return name


def pod_hostname(run_id: str, attempt: int, index: int) -> str:
    """The hostname the Indexed Job gives the pod of completion index `index`."""
    return f"{attempt_name(run_id, attempt)}-{index}"


def master_address(run_id: str, attempt: int) -> str:
    """Rank 0's stable DNS name: `<job>-0.<service>` (the Service has the Job's name)."""
    return f"{pod_hostname(run_id, attempt, 0)}.{attempt_name(run_id, attempt)}"


def label_value(text: str) -> str:
    """`text` when it is a valid label value, else a hash of it (never an invalid label)."""
    if len(text) <= MAX_NAME and _LABEL_VALUE.fullmatch(text):
        return text
    return f"h-{_digest(text, 20)}"


def namespace_for(template: str, org_id: str) -> str:
    """The training namespace: `template` with `{org}` replaced by the org as a DNS label."""
    if "{org}" not in template:
        return template
    org = _NOT_DNS.sub("-", org_id.lower()).strip("-") or "org"
    namespace = template.replace("{org}", org)
    if len(namespace) > MAX_NAME or not _DNS_LABEL_BODY.fullmatch(namespace):
        namespace = template.replace("{org}", _digest(org_id))
    return namespace


def org_secret_name(org_id: str) -> str:
    """The org's Secret in the training namespace, `trainport-secrets-<org id as a DNS label>`,
    holding only that org's run-secret values (a hash where the id would not map one to one)."""
    cleaned = _NOT_DNS.sub("-", org_id.lower()).strip("-")
    if cleaned != org_id.replace("_", "-") or not cleaned or len(cleaned) > _BASE_LIMIT:
        cleaned = f"{cleaned[: _BASE_LIMIT - 11].strip('-') or 'org'}-{_digest(org_id)}"
    return f"{ORG_SECRET_PREFIX}{cleaned}"


def org_secret_labels(org_id: str, installation: str) -> dict[str, str]:
    return {**owner_labels(installation), ORG_KEY: label_value(org_id)}


def owner_labels(installation: str) -> dict[str, str]:
    """What every object this installation makes carries, and every watch and list selects."""
    return {MANAGED_BY_KEY: MANAGED_BY, INSTALLATION_KEY: label_value(installation)}


def attempt_labels(
    run_id: str, org_id: str, project_id: str, attempt: int, installation: str
) -> dict[str, str]:
    """The labels that identify an attempt's objects; the Service selects on a subset."""
    labels = {
        **owner_labels(installation),
        RUN_ID_KEY: label_value(run_id),
        ORG_KEY: label_value(org_id),
        ATTEMPT_KEY: str(attempt),
    }
    if project_id:
        labels[PROJECT_KEY] = label_value(project_id)
    return labels


def selector_labels(run_id: str, attempt: int, installation: str) -> dict[str, str]:
    """What the headless Service selects: exactly one attempt's pods."""
    return {
        **owner_labels(installation),
        RUN_ID_KEY: label_value(run_id),
        ATTEMPT_KEY: str(attempt),
    }


def managed_selector(installation: str) -> str:
    """The label selector of every watch and list: everything this installation made, and
    nothing another Trainport sharing the namespace made (it would look like an orphan)."""
    return ",".join(f"{key}={value}" for key, value in owner_labels(installation).items())


def is_user_label_allowed(key: str) -> bool:
    """A user's label may not claim a key that the cluster, Kueue or Trainport interprets."""
    prefix = key.rpartition("/")[0]
    return not any(prefix == p or prefix.endswith("." + p) for p in _FOREIGN_PREFIXES)
