"""The Kubernetes kinds the renderer emits and the observer reads, with the verbs each needs.

The Helm chart's RBAC is checked against this list, so it is the single place to add a kind.
"""

from typing import NamedTuple


class Kind(NamedTuple):
    group: str  # "" for the core group
    version: str
    resource: str  # plural, as in RBAC rules and REST paths
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]


WRITE = ("get", "list", "create", "update", "delete")  # apply replaces whole objects: no patch
READ = ("get", "list")
WATCHED = ("watch",)  # the kinds deployments.watch follows, so a change is seen at once

KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "namespaces", "Namespace", False, WRITE),
    Kind("", "v1", "resourcequotas", "ResourceQuota", True, WRITE),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, WRITE),
    Kind("apps", "v1", "deployments", "Deployment", True, WRITE + WATCHED),
    Kind("", "v1", "services", "Service", True, WRITE),
    Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, WRITE),
    Kind("", "v1", "secrets", "Secret", True, WRITE),
    Kind("", "v1", "pods", "Pod", True, READ + WATCHED),
    Kind("", "v1", "pods/log", "Pod log", True, ("get",)),
    Kind("", "v1", "events", "Event", True, READ),
    Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, ("list",)),  # a canary's Service serves
    Kind("", "v1", "nodes", "Node", False, ("list",)),  # the cluster probe's capacity figures
)
