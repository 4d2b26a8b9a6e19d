"""Server-side defaulting, applied after validation and before storing.

Contract: ``apply_defaults(plural, obj, old, alloc_ip)`` mutates ``obj`` in place the way
the apiserver's defaulters do for the fields listed below. It exists because a reconciler
that compares its desired manifest with what it reads back sees these fields on a real
cluster; without them a naive drift check would pass here and flap in production.

Covered (subset of the real defaulters): Deployment/ReplicaSet replicas, strategy,
revisionHistoryLimit, progressDeadlineSeconds; pod spec restartPolicy, dnsPolicy,
schedulerName, terminationGracePeriodSeconds, securityContext, container
imagePullPolicy/termination message/port protocol; Service type, clusterIP allocation,
ports protocol/targetPort, sessionAffinity, ipFamilies; Secret type and stringData -> data;
Namespace metadata.name label, finalizers and phase; NetworkPolicy policyTypes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable


def _container_defaults(c: dict) -> None:
    image = c.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    # "Always" for :latest or untagged images, else IfNotPresent, unless pinned by digest.
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")


def pod_spec_defaults(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        _container_defaults(c)


def _workload_defaults(obj: dict, kind: str) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    if kind == "deployments":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec_defaults(template.setdefault("spec", {}))


def _service_defaults(obj: dict, old: dict | None, alloc_ip: Callable[[], str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    if spec["type"] == "ExternalName":
        return
    old_spec = (old or {}).get("spec") or {}
    # clusterIP is allocated once and carried over when an update omits it.
    if not spec.get("clusterIP"):
        spec["clusterIP"] = old_spec.get("clusterIP") or alloc_ip()
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


def _secret_defaults(obj: dict) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()


def apply_defaults(plural: str, obj: dict, old: dict | None,
                   alloc_ip: Callable[[], str]) -> None:
    if plural in ("deployments", "replicasets"):
        _workload_defaults(obj, plural)
    elif plural == "pods":
        pod_spec_defaults(obj.setdefault("spec", {}))
    elif plural == "services":
        _service_defaults(obj, old, alloc_ip)
    elif plural == "secrets":
        _secret_defaults(obj)
    elif plural == "namespaces":
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif plural == "networkpolicies":
        spec = obj.setdefault("spec", {})
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def initial_status(plural: str) -> dict | None:
    """Status a freshly created object starts with (None: no status field)."""
    if plural == "namespaces":
        return {"phase": "Active"}
    if plural == "services":
        return {"loadBalancer": {}}
    # Non-omitempty Go ints appear as 0; the client's models require them.
    if plural == "replicasets":
        return {"replicas": 0}
    if plural == "horizontalpodautoscalers":
        return {"desiredReplicas": 0}
    if plural == "deployments":
        return {}
    if plural == "pods":
        return {"phase": "Pending"}  # the simulator fills in the rest on its next pass
    return None
