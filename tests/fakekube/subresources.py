"""Subresources other than /status: ``pods/{name}/log`` and ``{deployments,replicasets}/{name}/scale``.

Contract:
- ``pod_log(store, ns, name, query)`` returns the container's log as text, honouring
  ``container`` (required when the pod has several), ``tailLines``, ``timestamps`` and
  ``limitBytes``; a container that never started answers 400 "... is waiting to start:
  <reason>" like the kubelet. ``previous``/``sinceSeconds``/``follow`` are ignored.
- ``handle_scale(api, route, query, body, content_type)`` serves the autoscaling/v1 Scale
  view: GET reads it, PUT/PATCH (any patch flavour, apply included) change only
  ``spec.replicas`` of the parent through the normal write pipeline, with the same
  resourceVersion precondition and validation as a direct write.
"""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import yaml

from . import patches
from .errors import ApiError, conflict, invalid, not_found
from .resources import RESOURCES
from .selectors import selector_to_query


def int_param(query: dict, name: str) -> int | None:
    if query.get(name) in (None, ""):
        return None
    try:
        return int(query[name])
    except ValueError:
        raise ApiError(400, f"invalid value for {name}: {query[name]!r}") from None


def pod_log(store, namespace: str, name: str, query: dict) -> str:
    with store.lock:
        pod = store.get("pods", namespace, name)
        if pod is None:
            raise not_found(RESOURCES["pods"], name)
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        container = query.get("container")
        if not container:
            if len(names) != 1:
                raise ApiError(400, f"a container name must be specified for pod {name}, "
                                    f"choose one of: [{' '.join(names)}]")
            container = names[0]
        if container not in names:
            raise ApiError(400, f"container {container} is not valid for pod {name}")
        status = next((s for s in (pod.get("status") or {}).get("containerStatuses") or []
                       if s["name"] == container), None)
        entries = list(store.logs.get((pod["metadata"]["uid"], container), []))
    if not entries:
        waiting = ((status or {}).get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "ContainerCreating")
        raise ApiError(400, f'container "{container}" in pod "{name}" is waiting to '
                            f'start: {reason}')
    tail = int_param(query, "tailLines")
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    if query.get("timestamps") in ("true", "1"):
        lines = [f"{ts} {text}" for ts, text in entries]
    else:
        lines = [text for _, text in entries]
    text = "".join(line + "\n" for line in lines)
    limit_bytes = int_param(query, "limitBytes")
    if limit_bytes:
        text = text.encode()[:limit_bytes].decode(errors="ignore")
    return text


def scale_of(obj: dict) -> dict:
    meta = obj["metadata"]
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": selector_to_query(obj["spec"].get("selector"))}}


def _decode(body: bytes, ctype: str):
    try:
        if ctype == patches.APPLY:
            return yaml.safe_load(body.decode() or "null")
        return json.loads(body.decode() or "null")
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise ApiError(400, f"unable to decode request body: {e}") from None


def handle_scale(api, route, query: dict, body: bytes, content_type: str):
    rt = route.rt
    if rt.plural not in ("deployments", "replicasets"):
        raise ApiError(404, "the server could not find the requested resource")
    with api.store.lock:
        old = api.store.get(rt.plural, route.namespace, route.name)
        if old is None:
            raise not_found(rt, route.name)
        if route.verb == "get":
            return 200, scale_of(old), None
        ctype = patches.media_type(content_type)
        sent = _decode(body, ctype)
        if route.verb == "update":
            scale = sent
        elif ctype == patches.APPLY:
            scale = patches.apply_merge(scale_of(old), sent)
        else:
            scale = patches.algorithm_for(ctype)(scale_of(old), sent)
        if not isinstance(scale, dict):
            raise ApiError(400, "request body must be a JSON object")
        scale.setdefault("apiVersion", "autoscaling/v1")
        scale.setdefault("kind", "Scale")
        try:
            kubernetes_validate.validate(scale, api.k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise invalid(rt, route.name, [(".".join(map(str, e.path)), e.message)]) from None
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if replicas < 0:
            raise invalid(rt, route.name, [("spec.replicas", "must be greater than or equal "
                                                             "to 0")])
        sent_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, route.name)
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = replicas
        stored = api.write(rt, new, old, query)
        return 200, scale_of(stored), None
