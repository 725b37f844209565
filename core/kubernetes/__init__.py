"""What Trainport asks of a Kubernetes cluster, as plain JSON in the API's own shape.

`naming` holds every name, label key and selector; `config` the settings that shape manifests
(`cluster_config`, from core.settings); `manifests` renders an attempt's Job, its headless
Service and its org's Secret as dicts with the API's camelCase keys. Nothing here imports the
`kubernetes` client (only workers.executors.kubernetes does): the executor sends these dicts as
request bodies, and `POST /v1/runs/plan` shows the very same dicts before a run is submitted.
"""
