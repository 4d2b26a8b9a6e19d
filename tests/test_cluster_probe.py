"""The cluster probe against the in-test API server: figures from ready nodes only, the contact time,
and an unreachable cluster recorded without losing the last good figures or touching ``updated_at``."""

import pytest

from deployments.models import Cluster
from deployments.probe import cluster_probe, clusters_probe
from tests.fakekube.resources import version_info

pytestmark = pytest.mark.django_db


def node(name: str, *, cpu: str, memory: str, ready: bool = True, gpus: int = 0) -> dict:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": allocatable, "capacity": allocatable,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_probe_records_version_and_the_capacity_of_ready_nodes(fake_kube, cluster):
    fake_kube.seed("nodes", node("cpu-1", cpu="7500m", memory="30Gi"))
    fake_kube.seed("nodes", node("gpu-1", cpu="16", memory="64Gi", gpus=4))
    fake_kube.seed("nodes", node("down", cpu="64", memory="256Gi", gpus=8, ready=False))
    fake_kube.clear_requests()

    assert clusters_probe() == 1
    cluster.refresh_from_db()
    assert cluster.capacity == {"nodes": 3, "readyNodes": 2, "cpu": 23.5, "memoryGiB": 94.0, "gpu": 4, "neuron": 0}
    assert cluster.kubernetes_version == version_info(fake_kube.k8s_version)["gitVersion"]
    assert cluster.contacted_at is not None and cluster.contact_error == ""
    assert [(r.method, r.path) for r in fake_kube.requests] == [("GET", "/version"), ("GET", "/api/v1/nodes")]


def test_an_unreachable_cluster_keeps_its_last_figures_and_says_why(fake_kube, cluster):
    fake_kube.seed("nodes", node("cpu-1", cpu="8", memory="32Gi"))
    assert cluster_probe(cluster) is True
    cluster.refresh_from_db()
    seen, contacted, updated = cluster.capacity, cluster.contacted_at, cluster.updated_at

    fake_kube.unreachable()
    assert cluster_probe(cluster) is False
    cluster.refresh_from_db()
    assert cluster.contact_error and cluster.capacity == seen and cluster.contacted_at == contacted
    assert cluster.updated_at == updated  # the cached client stays keyed to the same row version
    assert Cluster.objects.get(pk=cluster.pk).enabled
