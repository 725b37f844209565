"""The Grafana dashboard and the Prometheus alert rules in deploy/ (issue 19).

Every series they query must be one Trainport exports: a metric defined in core/telemetry.py
or a gauge the platform collector reads from the database. The only exception is the webhook
gauge, exported by the webhooks work (listed here by name).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core import telemetry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "trainport.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SERIES = re.compile(r"\btrainport_[a-z0-9_]+")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported(database_url: str) -> set[str]:
    """Every sample name Trainport's processes can expose."""
    names: set[str] = set()
    for metric in vars(telemetry).values():
        if isinstance(metric, MetricWrapperBase):
            for family in metric.describe():
                names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    engine = create_engine(database_url)
    try:
        collector = telemetry.PlatformCollector(lambda: Session(engine))
        names.update(family.name for family in collector.collect())
    finally:
        engine.dispose()
    return names


def dashboard_queries() -> list[str]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert board["panels"]
    queries = []
    for panel in board["panels"]:
        assert panel["title"], panel
        assert panel["targets"], panel
        queries += [target["expr"] for target in panel["targets"]]
    return queries


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_dashboard_and_alerts_query_only_exported_series(postgres_url: str) -> None:
    known = exported(postgres_url)
    for query in dashboard_queries() + [rule["expr"] for rule in alert_rules()]:
        used = set(SERIES.findall(query))
        assert used, query
        assert used <= known, (query, used - known)


def test_the_alerts_cover_what_the_issue_asks_for() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for wanted in (
        "TrainportQueueStuck",
        "TrainportRelayLag",
        "TrainportReconcileFailing",
        "TrainportWebhookEndpointDisabled",
    ):
        assert wanted in rules
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_no_series_is_labelled_by_run() -> None:
    for metric in vars(telemetry).values():
        if isinstance(metric, MetricWrapperBase):
            assert not {"run", "run_id", "attempt"} & set(metric._labelnames)
