"""Provenance (issue 12): an attempt's image is the one the kubelet reports, not the spec's."""

from __future__ import annotations

from tests.k8s.cluster import ClusterSimulator, image_id
from tests.support.kubernetes import expect_seen, launch_request, outcome_after, seen
from workers.executors.kubernetes.executor import KubernetesExecutor


def test_the_observation_carries_the_image_digest_the_kubelet_reported(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    request = launch_request(nodes=2, image="registry.example.com/ml/train:v3")
    executor.launch(request)
    cluster.step()
    assert expect_seen(executor, request).image_digest == ""
    cluster.step()
    outcome_after(executor, request, "running")
    running = seen(executor, request)
    assert running is not None
    assert running.image_digest == image_id("registry.example.com/ml/train:v3")
    assert running.image_digest.startswith("registry.example.com/ml/train@sha256:")
