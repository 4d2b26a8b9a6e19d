"""Resource types the fake API server knows, and the discovery documents built from them.

Contract: ``RESOURCES`` maps a plural name ("deployments") to a ``ResourceType``. Every
request path is resolved against this table; a plural that is not in it answers 404, as a
real server does for an API it does not serve. To serve another kind, add one entry here
(and make sure kubernetes_validate has a schema for it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    plural: str
    singular: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool = True
    # Kinds whose status is owned by a controller: the main resource ignores status sent by
    # clients (a real server only changes status through the /status subresource).
    status_subresource: bool = False
    # metadata.generation is bumped only when spec changes (Deployments, HPAs, ...).
    has_generation: bool = False
    # The real apiserver answers DELETE with the deleted object for some kinds and with a
    # v1 Status for others; the generated client's response types follow that split, and its
    # pydantic models reject the wrong shape (a Status where it expects a V1Pod).
    delete_returns_object: bool = False
    # Which name rule applies: "subdomain" (most kinds), "label" (namespaces) or
    # "dns1035" (services: must start with a letter).
    name_rule: str = "subdomain"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified_kind(self) -> str:
        """``Deployment.apps`` style name used in real error messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


_ALL = [
    ResourceType("namespaces", "namespace", "Namespace", "", "v1", namespaced=False,
                 status_subresource=True, delete_returns_object=True, name_rule="label"),
    ResourceType("secrets", "secret", "Secret", "", "v1"),
    ResourceType("services", "service", "Service", "", "v1", status_subresource=True,
                 delete_returns_object=True, name_rule="dns1035"),
    ResourceType("pods", "pod", "Pod", "", "v1", status_subresource=True,
                 delete_returns_object=True),
    ResourceType("resourcequotas", "resourcequota", "ResourceQuota", "", "v1",
                 status_subresource=True, delete_returns_object=True),
    ResourceType("events", "event", "Event", "", "v1"),
    # A real API server keeps a Node's status on create (kubelets register with it); tests seed nodes so.
    ResourceType("nodes", "node", "Node", "", "v1", namespaced=False, delete_returns_object=True),
    ResourceType("configmaps", "configmap", "ConfigMap", "", "v1"),
    ResourceType("serviceaccounts", "serviceaccount", "ServiceAccount", "", "v1",
                 delete_returns_object=True),
    ResourceType("deployments", "deployment", "Deployment", "apps", "v1",
                 status_subresource=True, has_generation=True),
    ResourceType("replicasets", "replicaset", "ReplicaSet", "apps", "v1",
                 status_subresource=True, has_generation=True),
    ResourceType("horizontalpodautoscalers", "horizontalpodautoscaler",
                 "HorizontalPodAutoscaler", "autoscaling", "v2",
                 status_subresource=True, has_generation=True),
    ResourceType("networkpolicies", "networkpolicy", "NetworkPolicy",
                 "networking.k8s.io", "v1", has_generation=True),
    ResourceType("endpointslices", "endpointslice", "EndpointSlice", "discovery.k8s.io", "v1"),
]

RESOURCES: dict[str, ResourceType] = {rt.plural: rt for rt in _ALL}

# (group, version) pairs served, in discovery order; "" is the core group.
GROUP_VERSIONS: list[tuple[str, str]] = []
for _rt in _ALL:
    if (_rt.group, _rt.version) not in GROUP_VERSIONS:
        GROUP_VERSIONS.append((_rt.group, _rt.version))


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    rt = RESOURCES.get(plural)
    if rt is None or rt.group != group or rt.version != version:
        return None
    return rt


_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update"]


def api_resource_list(group: str, version: str) -> dict | None:
    """The ``/api/v1`` or ``/apis/{group}/{version}`` APIResourceList (None if not served)."""
    if (group, version) not in GROUP_VERSIONS:
        return None
    resources = []
    for rt in _ALL:
        if (rt.group, rt.version) != (group, version):
            continue
        resources.append({"name": rt.plural, "singularName": rt.singular,
                          "namespaced": rt.namespaced, "kind": rt.kind, "verbs": _VERBS})
        if rt.status_subresource:
            resources.append({"name": rt.plural + "/status", "singularName": "",
                              "namespaced": rt.namespaced, "kind": rt.kind,
                              "verbs": ["get", "patch", "update"]})
        if rt.plural in ("deployments", "replicasets"):
            resources.append({"name": rt.plural + "/scale", "singularName": "",
                              "namespaced": True, "kind": "Scale", "group": "autoscaling",
                              "version": "v1", "verbs": ["get", "patch", "update"]})
        if rt.plural == "pods":
            resources.append({"name": "pods/log", "singularName": "", "namespaced": True,
                              "kind": "Pod", "verbs": ["get"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def api_versions(server_address: str) -> dict:
    """``GET /api``."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def api_group_list() -> dict:
    """``GET /apis``: one APIGroup per named group, each with its single served version."""
    groups = []
    for group, version in GROUP_VERSIONS:
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def version_info(k8s_version: str) -> dict:
    """``GET /version``; every field is filled because the client's VersionInfo requires them."""
    major, minor = k8s_version.split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0",
            "gitCommit": "0" * 40, "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0",
            "compiler": "gc", "platform": "linux/amd64"}
