"""EndpointSlice (discovery.k8s.io/v1) controller: what a Service routes to.

Contract: ``EndpointSliceController.reconcile_all()`` (store lock held, after the pod pass) keeps one
slice per Service that has a selector, named ``<service>-fake`` and labelled
``kubernetes.io/service-name``: an endpoint per matching pod that has an IP, ``ready`` as the pod's Ready
condition (``serving`` the same, ``terminating`` once the pod is being deleted), the Service's ports. The
slice is owned by its Service, so it goes with it. While ``held``, slices are left as they are (a lagging
controller, for fault injection). Simplified: one slice however many pods, IPv4 only,
and no lag (the real controller follows pods a pass later).
"""

from __future__ import annotations

import copy

from .pods import pod_is_ready
from .resources import RESOURCES
from .selectors import match_label_selector
from .store import ObjectStore

_SLICES = RESOURCES["endpointslices"]
SERVICE_NAME = "kubernetes.io/service-name"


class EndpointSliceController:
    def __init__(self, store: ObjectStore):
        self.store = store
        self.held = False

    def reconcile_all(self) -> None:
        if self.held:
            return
        for service in self.store.list_live("services"):
            if (service.get("spec") or {}).get("selector"):
                self._reconcile(service)

    def _reconcile(self, service: dict) -> None:
        meta = service["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        pods = [p for p in self.store.list_live("pods", namespace)
                if (p.get("status") or {}).get("podIP")
                and match_label_selector({"matchLabels": service["spec"]["selector"]}, p["metadata"].get("labels"))]
        endpoints = [{
            "addresses": [p["status"]["podIP"]],
            "conditions": {"ready": pod_is_ready(p), "serving": pod_is_ready(p),
                           "terminating": bool(p["metadata"].get("deletionTimestamp"))},
            "nodeName": p["spec"].get("nodeName"),
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": p["metadata"]["name"],
                          "uid": p["metadata"]["uid"]},
        } for p in pods]
        ports = [{"name": port.get("name", ""), "port": port.get("targetPort", port.get("port")),
                  "protocol": port.get("protocol", "TCP")} for port in service["spec"].get("ports") or []]
        slice_name = f"{name}-fake"
        old = self.store.get_live("endpointslices", namespace, slice_name)
        if old is not None and old.get("endpoints") == endpoints and old.get("ports") == ports:
            return
        new = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": slice_name, "namespace": namespace,
                         "labels": {SERVICE_NAME: name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                              "uid": meta["uid"], "controller": True}]},
            "endpoints": endpoints, "ports": ports,
        }
        if old is None:
            self.store.insert(_SLICES, new)
        else:
            self.store.update(_SLICES, new, copy.deepcopy(old))
