"""The local Kubernetes cluster: ``python -m scripts.localcluster up|down|status|destroy`` (see cluster.py)."""

from .cluster import ClusterError, LocalCluster, NodePool, default_pools, kubeconfig_text

DEFAULT_DIR = "localcluster"  # under the repository's .data/

__all__ = ["DEFAULT_DIR", "ClusterError", "LocalCluster", "NodePool", "default_pools", "kubeconfig_text"]
