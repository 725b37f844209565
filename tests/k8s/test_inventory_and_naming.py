"""Node inventory for the scheduler, read over HTTP; names and namespaces derived from ids."""

from __future__ import annotations

from core.kubernetes import naming
from core.settings import Settings
from tests.k8s.cluster import ClusterSimulator
from tests.k8s.fake_api import FakeApiServer
from tests.support.kubernetes import make_apis
from workers.executors.kubernetes.inventory import read_inventory


def test_inventory_counts_allocatable_gpus_per_type_on_ready_uncordoned_nodes(
    server: FakeApiServer, cluster: ClusterSimulator
) -> None:
    cluster.add_node("a1", gpus=8, gpu_type="NVIDIA-A100-SXM4-80GB")
    cluster.add_node("a2", gpus=8, gpu_type="NVIDIA-A100-SXM4-80GB")
    cluster.add_node("h1", gpus=8, gpu_type="NVIDIA-H100-80GB-HBM3", cordoned=True)
    cluster.add_node("h2", gpus=4, gpu_type="NVIDIA-H100-80GB-HBM3", ready=False)
    cluster.add_node("cpu", gpus=0)
    inventory = read_inventory(make_apis(server.url), Settings())
    assert inventory.gpus == {"NVIDIA-A100-SXM4-80GB": 16}
    assert inventory.nodes == 3


def test_names_are_deterministic_dns_labels_that_leave_room_for_the_index() -> None:
    assert naming.attempt_name("run_01jd5x", 2) == naming.attempt_name("run_01jd5x", 2)
    assert naming.attempt_name("run_01jd5x", 2) != naming.attempt_name("run_01jd5x", 3)
    assert naming.attempt_name("Run_X", 1) != naming.attempt_name("run_x", 1)
    assert len(naming.pod_hostname("x" * 64, 10**6, 511)) <= 63


def test_a_namespace_per_org_is_a_valid_dns_label() -> None:
    assert naming.namespace_for("trainport-runs", "org_1") == "trainport-runs"
    assert naming.namespace_for("runs-{org}", "org_01JD5X") == "runs-org-01jd5x"
    long = naming.namespace_for("runs-{org}", "org_" + "x" * 80)
    assert len(long) <= 63
    assert long.startswith("runs-")


def test_label_values_are_ids_or_hashes_never_invalid() -> None:
    assert naming.label_value("run_01jd5x") == "run_01jd5x"
    assert naming.label_value("_bad_").startswith("h-")
    assert naming.label_value("x" * 64).startswith("h-")
