"""core/v1 Events written by the simulated controllers.

Contract: ``record_event(store, obj, reason, message, ...)`` creates an Event in the
object's namespace, or - like the kubelet/controller event recorder - bumps ``count`` and
``lastTimestamp`` of an existing Event with the same involved object, reason and message.
Must be called with ``store.lock`` held (controllers hold it for a whole pass).
"""

from __future__ import annotations

import uuid

from .resources import RESOURCES
from .store import ObjectStore, rfc3339

_EVENTS = RESOURCES["events"]


def record_event(store: ObjectStore, obj: dict, reason: str, message: str,
                 event_type: str = "Normal", component: str = "kubelet",
                 field_path: str | None = None) -> None:
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    for event in store.list_live("events", namespace):
        involved = event.get("involvedObject") or {}
        if (involved.get("uid") == meta["uid"] and event.get("reason") == reason
                and event.get("message") == message):
            updated = dict(event, count=event.get("count", 1) + 1, lastTimestamp=rfc3339())
            store.update(_EVENTS, updated, event)
            return
    # Stored objects always carry apiVersion/kind (the API layer fills them in).
    involved = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                "namespace": namespace, "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", "")}
    if field_path:
        involved["fieldPath"] = field_path
    now = rfc3339()
    store.insert(_EVENTS, {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": involved, "reason": reason, "message": message,
        "type": event_type, "count": 1, "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": component}, "reportingComponent": component,
        "reportingInstance": "",
    })
