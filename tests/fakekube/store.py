"""The in-memory object store shared by the HTTP layer and the simulated controllers.

Contract:
- One re-entrant lock (``store.lock``) guards everything. Public readers take it and
  return deep copies; the ``*_live`` accessors return the stored dicts themselves and
  must only be used while holding the lock (the controllers do, for a whole reconcile
  pass, so a client write can never interleave with a half-finished controller update).
- ``insert`` stamps server fields (uid, resourceVersion, creationTimestamp, generation);
  ``update`` bumps resourceVersion and, for kinds with ``has_generation``, bumps
  generation only when ``spec`` changed. resourceVersion is one global counter rendered
  as a string, like etcd's revision.
- ``remove`` deletes an object and, unless orphaning, every object whose
  ownerReferences point at it (recursively), immediately; deleting a Namespace deletes
  its contents. The real garbage collector does this asynchronously.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid

from .resources import RESOURCES, ResourceType

Key = tuple[str, str]  # (namespace or "", name)


def rfc3339(t: float | None = None) -> str:
    """Second-precision UTC timestamp with a Z suffix, as the apiserver serialises them."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


class ObjectStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._objects: dict[str, dict[Key, dict]] = {plural: {} for plural in RESOURCES}
        self._rv = 0
        self._ips = 0
        # Pod logs live beside the objects: (pod uid, container name) -> lines.
        self.logs: dict[tuple[str, str], list[str]] = {}

    # ---- counters ----

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @property
    def resource_version(self) -> str:
        with self.lock:
            return str(self._rv)

    def alloc_ip(self, prefix: str = "10.96") -> str:
        with self.lock:
            self._ips += 1
            return f"{prefix}.{self._ips // 250}.{self._ips % 250 + 1}"

    # ---- reads ----

    def get_live(self, plural: str, namespace: str | None, name: str) -> dict | None:
        return self._objects[plural].get((namespace or "", name))

    def list_live(self, plural: str, namespace: str | None = None) -> list[dict]:
        with self.lock:
            items = [obj for (ns, _), obj in self._objects[plural].items()
                     if namespace is None or ns == namespace]
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""),
                                            o["metadata"]["name"]))

    def get(self, plural: str, namespace: str | None, name: str) -> dict | None:
        with self.lock:
            return copy.deepcopy(self.get_live(plural, namespace, name))

    def list(self, plural: str, namespace: str | None = None) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self.list_live(plural, namespace))

    # ---- writes ----

    def insert(self, rt: ResourceType, obj: dict) -> dict:
        """Store a new object, stamping server-owned metadata. Returns a copy."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            meta["uid"] = str(uuid.uuid4())
            meta["resourceVersion"] = self._next_rv()
            meta["creationTimestamp"] = rfc3339()
            if rt.has_generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            key = (meta.get("namespace", "") if rt.namespaced else "", meta["name"])
            self._objects[rt.plural][key] = obj
            return copy.deepcopy(obj)

    def update(self, rt: ResourceType, obj: dict, old: dict) -> dict:
        """Replace a stored object; ``old`` is the stored version it supersedes."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            old_meta = old["metadata"]
            for field in ("uid", "creationTimestamp", "namespace"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            if rt.has_generation:
                generation = old_meta.get("generation", 1)
                meta["generation"] = generation + (obj.get("spec") != old.get("spec"))
            else:
                meta.pop("generation", None)
            meta["resourceVersion"] = self._next_rv()
            key = (meta.get("namespace", "") if rt.namespaced else "", meta["name"])
            self._objects[rt.plural][key] = obj
            return copy.deepcopy(obj)

    def remove(self, rt: ResourceType, namespace: str | None, name: str,
               orphan: bool = False) -> dict | None:
        """Delete one object and garbage-collect its dependents. Returns the removed object."""
        with self.lock:
            obj = self._objects[rt.plural].pop((namespace or "", name), None)
            if obj is None:
                return None
            self._next_rv()
            uid = obj["metadata"]["uid"]
            if rt.plural == "pods":
                for key in [k for k in self.logs if k[0] == uid]:
                    del self.logs[key]
            if rt.plural == "namespaces":
                for other in RESOURCES.values():
                    if other.namespaced:
                        for dep in self.list_live(other.plural, name):
                            self.remove(other, name, dep["metadata"]["name"])
            self._collect_dependents(uid, orphan)
            return obj

    def _collect_dependents(self, owner_uid: str, orphan: bool) -> None:
        for other in RESOURCES.values():
            for dep in self.list_live(other.plural):
                refs = dep["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == owner_uid for r in refs):
                    continue
                if orphan:
                    kept = [r for r in refs if r.get("uid") != owner_uid]
                    if kept:
                        dep["metadata"]["ownerReferences"] = kept
                    else:
                        dep["metadata"].pop("ownerReferences")
                    dep["metadata"]["resourceVersion"] = self._next_rv()
                else:
                    self.remove(other, dep["metadata"].get("namespace"),
                                dep["metadata"]["name"])
