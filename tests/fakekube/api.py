"""REST semantics of the fake apiserver, independent of HTTP.

Contract: ``KubeApi.handle(route, query, body, content_type)`` performs one API call and
returns ``(http_code, payload, response_content_type)`` where ``payload`` is a dict (sent
as JSON) or a str (sent as text/plain); failures raise ``ApiError``. Every write - create,
replace, patch, apply, /status and /scale - ends in ``KubeApi.write`` (validation, status
handling, defaulting, resourceVersion precondition, then the store), so they cannot
drift apart.

Deliberate simplifications (see also patches.py / validation.py):
- no watch (``watch=true`` answers 405), no ``resourceVersion`` semantics on reads;
- deletion is immediate: no finalizers, no graceful termination, no deletionTimestamp;
- status sent on the main resource is ignored for kinds with a status subresource (as
  real), and ``/status`` replaces/patches only the status;
- ``limit``/``continue`` paginate by (namespace, name) order; continue tokens never expire;
- a body whose metadata.name differs from the URL answers 422 (the real server says 400).
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass

import yaml

from . import patches
from .defaults import apply_defaults, initial_status
from .errors import ApiError, already_exists, conflict, not_found, success_status
from .resources import RESOURCES, ResourceType
from .selectors import parse_field_selector, parse_label_selector
from .store import ObjectStore
from .subresources import handle_scale, int_param, pod_log
from .validation import validate_object

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_NAME_ALPHABET) for _ in range(n))


@dataclass
class Route:
    """A resolved request path. ``rt`` is None for discovery paths."""
    verb: str
    rt: ResourceType | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def _parse_json(body: bytes, what: str = "body"):
    try:
        return json.loads(body.decode() or "null")
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, f"unable to decode request {what} as JSON: {e}") from None


class KubeApi:
    def __init__(self, store: ObjectStore, k8s_version: str):
        self.store = store
        self.k8s_version = k8s_version

    # ---- dispatch ----

    def handle(self, route: Route, query: dict, body: bytes, content_type: str):
        rt, verb = route.rt, route.verb
        if route.subresource == "log":
            return 200, pod_log(self.store, route.namespace, route.name, query), "text/plain"
        if route.subresource == "scale":
            return handle_scale(self, route, query, body, content_type)
        if route.subresource not in (None, "status"):
            raise ApiError(404, "the server could not find the requested resource")
        if verb == "list":
            if query.get("watch") in ("true", "1"):
                raise ApiError(405, "fakekube does not implement watch")
            return 200, self._list(rt, route.namespace, query), None
        if verb == "get":
            return 200, self._get_existing(rt, route.namespace, route.name), None
        if verb == "create":
            obj = _parse_json(body)
            return 201, self._create(rt, route.namespace, obj, query), None
        if verb == "update":
            obj = _parse_json(body)
            return 200, self._replace(route, obj, query), None
        if verb == "patch":
            return self._patch(route, body, content_type, query)
        if verb == "delete":
            return 200, self._delete(rt, route.namespace, route.name, query, body), None
        if verb == "deletecollection":
            return 200, self._delete_collection(rt, route.namespace, query), None
        raise ApiError(405, f"verb {verb} is not supported")

    # ---- reads ----

    def _get_existing(self, rt: ResourceType, namespace: str | None, name: str) -> dict:
        obj = self.store.get(rt.plural, namespace, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def _list(self, rt: ResourceType, namespace: str | None, query: dict) -> dict:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), rt.plural)
        with self.store.lock:
            items = [o for o in self.store.list(rt.plural, namespace)
                     if labels(o["metadata"].get("labels")) and fields(o)]
            rv = self.store.resource_version
        start = 0
        if query.get("continue"):
            token = query["continue"]
            start = next((i for i, o in enumerate(items) if _item_key(o) > token), len(items))
        items = items[start:]
        meta = {"resourceVersion": rv}
        limit = int_param(query, "limit") or 0
        if limit and len(items) > limit:
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            meta["continue"] = _item_key(items[-1])
        for item in items:
            # Real list responses omit TypeMeta on items.
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta,
                "items": items}

    # ---- writes ----

    def _check_identity(self, rt: ResourceType, namespace: str | None, path_name: str | None,
                        obj) -> None:
        """apiVersion/kind/namespace/name of the body against the URL; fills in blanks."""
        if not isinstance(obj, dict):
            raise ApiError(400, "request body must be a JSON object")
        for field, expected in (("apiVersion", rt.api_version), ("kind", rt.kind)):
            if not obj.get(field):
                obj[field] = expected
            elif obj[field] != expected:
                raise ApiError(400, f"the {field} in the data ({obj[field]}) does not match "
                                    f"the expected {field} ({expected})")
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(400, "the namespace of the provided object does not match "
                                    "the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if path_name is not None:
            if meta.get("name") and meta["name"] != path_name:
                raise ApiError(422, f'{rt.qualified_kind} "{meta["name"]}" is invalid: '
                                    f'metadata.name: Invalid value: "{meta["name"]}": the name '
                                    f'of the object ({meta["name"]}) does not match the name '
                                    f'on the URL ({path_name})', reason="Invalid")
            meta["name"] = path_name
        elif not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + random_suffix()
            else:
                raise ApiError(422, f'{rt.qualified_kind} "" is invalid: metadata.name: '
                                    f'Required value: name or generateName is required',
                               reason="Invalid")

    def _require_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if rt.namespaced and self.store.get_live("namespaces", None, namespace) is None:
            raise not_found(RESOURCES["namespaces"], namespace or "")

    def write(self, rt: ResourceType, obj: dict, old: dict | None, query: dict,
               subresource: str | None = None) -> dict:
        """Validate, settle status, default, check resourceVersion, persist (unless dryRun).

        ``obj`` already passed _check_identity; ``old`` is the stored object (None on
        create). Caller holds the store lock so the check and the write are atomic."""
        validate_object(rt, obj, self.k8s_version, old)
        obj = copy.deepcopy(obj)
        if subresource == "status":
            # /status changes only status; everything else comes from the stored object.
            new = copy.deepcopy(old)
            new["status"] = obj.get("status")
            new["metadata"]["resourceVersion"] = obj["metadata"].get("resourceVersion")
            obj = new
        elif rt.status_subresource:
            status = copy.deepcopy(old.get("status")) if old else initial_status(rt.plural)
            obj.pop("status", None)
            if status is not None:
                obj["status"] = status
        apply_defaults(rt.plural, obj, old, self.store.alloc_ip)
        if old is not None:
            sent_rv = obj["metadata"].get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"].get("resourceVersion"):
                raise conflict(rt, obj["metadata"]["name"])
        if query.get("dryRun"):
            return obj
        if old is None:
            for field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                obj["metadata"].pop(field, None)
            return self.store.insert(rt, obj)
        return self.store.update(rt, obj, old)

    def _create(self, rt: ResourceType, namespace: str | None, obj, query: dict) -> dict:
        self._check_identity(rt, namespace, None, obj)
        with self.store.lock:
            self._require_namespace(rt, namespace)
            if self.store.get_live(rt.plural, namespace, obj["metadata"]["name"]) is not None:
                # Validate first: the real server reports an invalid object before a clash.
                validate_object(rt, obj, self.k8s_version)
                raise already_exists(rt, obj["metadata"]["name"])
            return self.write(rt, obj, None, query)

    def _replace(self, route: Route, obj, query: dict) -> dict:
        rt = route.rt
        self._check_identity(rt, route.namespace, route.name, obj)
        with self.store.lock:
            old = self.store.get(rt.plural, route.namespace, route.name)
            if old is None:
                raise not_found(rt, route.name)
            return self.write(rt, obj, old, query, route.subresource)

    def _patch(self, route: Route, body: bytes, content_type: str, query: dict):
        rt = route.rt
        ctype = patches.media_type(content_type)
        if ctype == patches.APPLY:
            return self._apply(route, body, query)
        algorithm = patches.algorithm_for(ctype)
        patch = _parse_json(body, "patch")
        with self.store.lock:
            old = self.store.get(rt.plural, route.namespace, route.name)
            if old is None:
                raise not_found(rt, route.name)
            patched = algorithm(old, patch)
            self._check_identity(rt, route.namespace, route.name, patched)
            return 200, self.write(rt, patched, old, query, route.subresource), None

    def _apply(self, route: Route, body: bytes, query: dict):
        """Simplified server-side apply: see patches.apply_merge for what is left out."""
        rt = route.rt
        if not query.get("fieldManager"):
            raise ApiError(400, "PATCH requests with apply content type must specify "
                                "fieldManager")
        try:
            applied = yaml.safe_load(body.decode() or "null")
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise ApiError(400, f"error decoding YAML: {e}") from None
        if not isinstance(applied, dict) or not applied.get("apiVersion") \
                or not applied.get("kind"):
            raise ApiError(400, "apply patch must be an object with apiVersion and kind set")
        with self.store.lock:
            old = self.store.get(rt.plural, route.namespace, route.name)
            if old is None:
                if route.subresource:
                    raise not_found(rt, route.name)
                self._check_identity(rt, route.namespace, route.name, applied)
                self._require_namespace(rt, route.namespace)
                return 201, self.write(rt, applied, None, query), None
            patched = patches.apply_merge(old, applied)
            self._check_identity(rt, route.namespace, route.name, patched)
            return 200, self.write(rt, patched, old, query, route.subresource), None

    def _delete(self, rt: ResourceType, namespace: str | None, name: str, query: dict,
                body: bytes) -> dict:
        options = _parse_json(body, "DeleteOptions") if body.strip() else {}
        options = options if isinstance(options, dict) else {}
        policy = query.get("propagationPolicy") or options.get("propagationPolicy")
        orphan = policy == "Orphan" or options.get("orphanDependents") is True
        with self.store.lock:
            obj = self.store.get(rt.plural, namespace, name)
            if obj is None:
                raise not_found(rt, name)
            pre = options.get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                if pre.get(field) and pre[field] != obj["metadata"].get(field):
                    raise ApiError(409, f"Precondition failed: {field} in precondition: "
                                        f"{pre[field]}, {field} in object meta: "
                                        f"{obj['metadata'].get(field)}")
            if not (query.get("dryRun") or options.get("dryRun")):
                self.store.remove(rt, namespace, name, orphan=orphan)
        if rt.plural == "namespaces":
            obj.setdefault("status", {})["phase"] = "Terminating"
        return obj if rt.delete_returns_object else success_status(rt, obj)

    def _delete_collection(self, rt: ResourceType, namespace: str | None, query: dict) -> dict:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), rt.plural)
        with self.store.lock:
            for obj in self.store.list(rt.plural, namespace):
                if labels(obj["metadata"].get("labels")) and fields(obj) \
                        and not query.get("dryRun"):
                    self.store.remove(rt, obj["metadata"].get("namespace"),
                                      obj["metadata"]["name"])
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}


def _item_key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"
