"""The cluster probe: is the API server reachable, which Kubernetes does it run, what can its nodes hold.

Run by beat (``workers.cluster_probe``) for every enabled cluster; the operator console shows what it
recorded. Two requests per cluster (``/version`` and one LIST of nodes), whatever the endpoint count.
"""

import logging

from django.utils import timezone
from kubernetes.utils import parse_quantity

from controlplane.images import DEVICE_RESOURCE

from .kube import KubeError, kube_for
from .models import Cluster

log = logging.getLogger(__name__)
GIB = 2**30


def node_capacity(nodes: list[dict]) -> dict:
    """``{"nodes", "readyNodes", "cpu", "memoryGiB", "gpu", "neuron"}``: allocatable summed over the nodes
    whose Ready condition is True (what the scheduler can place on), counts over all nodes."""
    ready = [n for n in nodes if any(c.get("type") == "Ready" and c.get("status") == "True"
                                     for c in (n.get("status") or {}).get("conditions") or [])]
    total = {"cpu": 0, "memory": 0, **{accelerator: 0 for accelerator in DEVICE_RESOURCE}}
    for node in ready:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        total["cpu"] += parse_quantity(allocatable.get("cpu", "0"))
        total["memory"] += parse_quantity(allocatable.get("memory", "0"))
        for accelerator, resource in DEVICE_RESOURCE.items():
            total[accelerator] += parse_quantity(allocatable.get(resource, "0"))
    return {"nodes": len(nodes), "readyNodes": len(ready), "cpu": float(round(total["cpu"], 3)),
            "memoryGiB": float(round(total["memory"] / GIB, 1)),
            **{accelerator: int(total[accelerator]) for accelerator in DEVICE_RESOURCE}}


def cluster_probe(cluster: Cluster) -> bool:
    """Record the cluster's version and node capacity with the contact time, or why contact failed (the
    last good figures are kept). True when the cluster answered. Never raises for the cluster's faults."""
    try:
        kube = kube_for(cluster)
        version = kube.version()
        nodes = kube.list("Node")
    except (KubeError, ValueError) as exc:  # ValueError: a kubeconfig the client cannot load
        log.warning("cluster.unreachable cluster=%s error=%s", cluster.name, exc)
        Cluster.objects.filter(pk=cluster.pk).update(contact_error=str(exc)[:512])
        return False
    # A queryset update: ``updated_at`` keys the cached client and must only move when the row is edited.
    Cluster.objects.filter(pk=cluster.pk).update(
        contacted_at=timezone.now(), contact_error="", kubernetes_version=str(version.get("gitVersion", ""))[:64],
        capacity=node_capacity(nodes))
    return True


def clusters_probe() -> int:
    """Probe every enabled cluster; returns how many answered."""
    return sum(cluster_probe(cluster) for cluster in Cluster.objects.filter(enabled=True))
