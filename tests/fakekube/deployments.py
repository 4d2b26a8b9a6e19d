"""Deployment controller: ReplicaSets per pod-template hash, rolling updates, real status.

Contract: ``DeploymentController.reconcile_all(now)`` (store lock held) does, per
Deployment, what kube-controller-manager's deployment + replicaset controllers do:

- one ReplicaSet per pod template (named ``{deployment}-{hash}``, labelled
  ``pod-template-hash``, owned by the Deployment, annotated with the revision) and pods
  owned by the ReplicaSet, created directly by the controller;
- RollingUpdate follows the real algorithm (rolling.go): scale the new ReplicaSet up
  within ``replicas + maxSurge``, remove unhealthy old pods, then remove healthy old pods
  only while ``ready >= replicas - maxUnavailable``. So with ``maxUnavailable: 0`` old
  pods keep serving until replacements are Ready. ``Recreate`` deletes old pods first;
- status: observedGeneration, replicas, updatedReplicas, readyReplicas, availableReplicas,
  unavailableReplicas (zeros omitted, as the apiserver's omitempty does) and the
  Available / Progressing conditions with NewReplicaSetCreated, ReplicaSetUpdated,
  NewReplicaSetAvailable and ProgressDeadlineExceeded after
  ``progressDeadlineSeconds * config.progress_deadline_scale`` seconds without progress.

Orphaned ReplicaSets matching a Deployment's selector are adopted. Simplified:
minReadySeconds and spec.paused are ignored, pods are "available" as soon as Ready, pod
deletion is instant, old ReplicaSets are kept at 0 forever, and ReplicaSets without a
Deployment are not reconciled (their pods are left as they are).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass

from .api import random_suffix
from .events import record_event
from .pods import PodSimulator, SimConfig, pod_is_ready
from .resources import RESOURCES
from .selectors import match_label_selector
from .store import ObjectStore, rfc3339

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DEP, _RS, _PODS = RESOURCES["deployments"], RESOURCES["replicasets"], RESOURCES["pods"]


def template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    n, chars = int.from_bytes(digest[:8], "big"), []
    for _ in range(10):
        n, r = divmod(n, len(_ALPHABET))
        chars.append(_ALPHABET[r])
    return "".join(chars)


def int_or_percent(value, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = total * int(value[:-1]) / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


def owner_ref(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def owned_by(obj: dict, uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def _set_condition(conditions: list[dict], ctype: str, status: bool, reason: str,
                   message: str, progressed: bool = False) -> None:
    """Keep timestamps unless status/reason change (or progress touches lastUpdateTime)."""
    value = "True" if status else "False"
    now = rfc3339()
    current = next((c for c in conditions if c["type"] == ctype), None)
    if current and current["status"] == value and current["reason"] == reason \
            and current["message"] == message and not progressed:
        return
    cond = {"type": ctype, "status": value, "lastUpdateTime": now,
            "lastTransitionTime": now, "reason": reason, "message": message}
    if current:
        if current["status"] == value:
            cond["lastTransitionTime"] = current["lastTransitionTime"]
        conditions[conditions.index(current)] = cond
    else:
        conditions.append(cond)


@dataclass
class _Progress:
    rs_uid: str
    last: float  # monotonic time of the last observed progress


class DeploymentController:
    def __init__(self, store: ObjectStore, config: SimConfig, pods: PodSimulator):
        self.store = store
        self.config = config
        self.pods = pods
        self._progress: dict[str, _Progress] = {}

    def reconcile_all(self, now: float) -> None:
        live = set()
        for dep in self.store.list_live("deployments"):
            live.add(dep["metadata"]["uid"])
            self._reconcile(dep["metadata"]["namespace"], dep["metadata"]["name"], now)
        for uid in set(self._progress) - live:
            del self._progress[uid]

    # ---- object helpers (re-read live objects: every store.update replaces the dict) ----

    def _dep(self, ns: str, name: str) -> dict:
        return self.store.get_live("deployments", ns, name)

    def _pods_of(self, ns: str, rs_uid: str) -> list[dict]:
        return [p for p in self.store.list_live("pods", ns) if owned_by(p, rs_uid)]

    def _replicasets(self, dep: dict) -> list[dict]:
        """ReplicaSets owned by ``dep``, adopting orphans its selector matches (as real:
        e.g. after a delete with propagationPolicy=Orphan and a re-create)."""
        owned = []
        for rs in self.store.list_live("replicasets", dep["metadata"]["namespace"]):
            refs = rs["metadata"].get("ownerReferences") or []
            if owned_by(rs, dep["metadata"]["uid"]):
                owned.append(rs)
            elif not any(r.get("controller") for r in refs) and match_label_selector(
                    dep["spec"]["selector"], rs["metadata"].get("labels")):
                adopted = copy.deepcopy(rs)
                adopted["metadata"]["ownerReferences"] = refs + [owner_ref(dep)]
                self.store.update(_RS, adopted, rs)
                owned.append(self._rs_by_uid(rs))
        return owned

    def _create_pod(self, rs: dict) -> None:
        template = rs["spec"]["template"]
        meta = {"name": f"{rs['metadata']['name']}-{random_suffix()}",
                "namespace": rs["metadata"]["namespace"],
                "labels": dict(template["metadata"].get("labels") or {}),
                "ownerReferences": [owner_ref(rs)]}
        if template["metadata"].get("annotations"):
            meta["annotations"] = dict(template["metadata"]["annotations"])
        spec = copy.deepcopy(template["spec"])
        spec.setdefault("serviceAccountName", "default")  # ServiceAccount admission
        self.store.insert(_PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                  "spec": spec, "status": {"phase": "Pending"}})

    def _delete_pods(self, pods: list[dict], count: int) -> None:
        """Delete ``count`` pods, unready first, then newest, like the RS controller."""
        ranked = sorted(pods, key=lambda p: (pod_is_ready(p), -int(p["metadata"]
                                                                    ["resourceVersion"])))
        for pod in ranked[:max(count, 0)]:
            self.store.remove(_PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _ensure_new_rs(self, dep: dict, h: str, rss: list[dict]) -> tuple[dict, bool]:
        revisions = [int((rs["metadata"].get("annotations") or {}).get(REVISION, 0))
                     for rs in rss]
        top = max(revisions, default=0)
        for rs in rss:
            if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h:
                if int(rs["metadata"].get("annotations", {}).get(REVISION, 0)) < top:
                    new = copy.deepcopy(rs)  # rollback: the old RS becomes the newest revision
                    new["metadata"].setdefault("annotations", {})[REVISION] = str(top + 1)
                    self.store.update(_RS, new, rs)
                    return self._rs_by_uid(rs), False
                return rs, False
        template = copy.deepcopy(dep["spec"]["template"])
        labels = {**(template["metadata"].get("labels") or {}), HASH_LABEL: h}
        template["metadata"]["labels"] = labels
        selector = copy.deepcopy(dep["spec"]["selector"])
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: h}
        name = f"{dep['metadata']['name']}-{h}"
        self.store.insert(_RS, {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": dep["metadata"]["namespace"],
                         "labels": labels, "annotations": {REVISION: str(top + 1)},
                         "ownerReferences": [owner_ref(dep)]},
            "spec": {"replicas": dep["spec"].get("replicas", 1), "selector": selector,
                     "template": template},
            "status": {"replicas": 0}})
        record_event(self.store, dep, "ScalingReplicaSet",
                     f"Scaled up replica set {name} from 0 to {dep['spec'].get('replicas', 1)}",
                     component="deployment-controller")
        return self.store.get_live("replicasets", dep["metadata"]["namespace"], name), True

    def _rs_by_uid(self, rs: dict) -> dict:
        return self.store.get_live("replicasets", rs["metadata"]["namespace"],
                                   rs["metadata"]["name"])

    # ---- the sync ----

    def _limits(self, dep: dict, n: int) -> tuple[int, int]:
        """(maxSurge, maxUnavailable) resolved against the replica count."""
        strategy = dep["spec"].get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 0, n
        ru = strategy.get("rollingUpdate") or {}
        surge = int_or_percent(ru.get("maxSurge", "25%"), n, round_up=True)
        unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), n, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1  # the apiserver forbids both zero; the controller assumes 1
        return surge, unavailable

    def _scale(self, dep: dict, n: int, new_rs: dict, old_rss: list[dict]) -> None:
        ns = dep["metadata"]["namespace"]
        new_uid = new_rs["metadata"]["uid"]
        old_pods = [p for rs in old_rss for p in self._pods_of(ns, rs["metadata"]["uid"])]
        recreate = (dep["spec"].get("strategy") or {}).get("type") == "Recreate"
        if recreate:
            self._delete_pods(old_pods, len(old_pods))
            old_pods = []
        surge, unavailable = self._limits(dep, n)
        new_pods = self._pods_of(ns, new_uid)
        if len(new_pods) > n:
            self._delete_pods(new_pods, len(new_pods) - n)
        elif len(new_pods) < n:
            room = n + surge - len(new_pods) - len(old_pods)
            for _ in range(min(room, n - len(new_pods)) if not recreate else n - len(new_pods)):
                self._create_pod(new_rs)
        new_pods = self._pods_of(ns, new_uid)
        min_available = n - unavailable
        new_ready = sum(map(pod_is_ready, new_pods))
        max_scaled_down = len(new_pods) + len(old_pods) - min_available - (len(new_pods)
                                                                           - new_ready)
        unhealthy = [p for p in old_pods if not pod_is_ready(p)]
        if max_scaled_down > 0:
            self._delete_pods(unhealthy, min(len(unhealthy), max_scaled_down))
        healthy_old = [p for p in old_pods if pod_is_ready(p)]
        can_scale_down = new_ready + len(healthy_old) - min_available
        self._delete_pods(healthy_old, min(can_scale_down, len(healthy_old)))

    def _sync_rs(self, rs: dict, desired: int | None) -> list[dict]:
        pods = self._pods_of(rs["metadata"]["namespace"], rs["metadata"]["uid"])
        ready = sum(map(pod_is_ready, pods))
        new = copy.deepcopy(rs)
        new["spec"]["replicas"] = len(pods) if desired is None else desired
        # A spec change bumps generation on write; report the generation it will have.
        generation = rs["metadata"]["generation"] + (new["spec"] != rs["spec"])
        status = {"replicas": len(pods), "observedGeneration": generation}
        if pods:
            status["fullyLabeledReplicas"] = len(pods)
        if ready:
            status.update(readyReplicas=ready, availableReplicas=ready)
        new["status"] = status
        if new != rs:
            self.store.update(_RS, new, rs)
        return pods

    def _reconcile(self, ns: str, name: str, now: float) -> None:
        dep = self._dep(ns, name)
        n = dep["spec"].get("replicas", 1)
        rss = self._replicasets(dep)
        new_rs, created = self._ensure_new_rs(dep, template_hash(dep["spec"]["template"]), rss)
        new_uid = new_rs["metadata"]["uid"]
        old_rss = [rs for rs in rss if rs["metadata"]["uid"] != new_uid]
        self._scale(dep, n, new_rs, old_rss)
        new_pods = self._sync_rs(self._rs_by_uid(new_rs), n)
        old_pods = [p for rs in old_rss for p in self._sync_rs(self._rs_by_uid(rs), None)]
        self._sync_status(self._dep(ns, name), n, self._rs_by_uid(new_rs), new_pods,
                          old_pods, created, now)

    def _sync_status(self, dep: dict, n: int, new_rs: dict, new_pods: list[dict],
                     old_pods: list[dict], created: bool, now: float) -> None:
        old_status = dep.get("status") or {}
        total = len(new_pods) + len(old_pods)
        ready = sum(map(pod_is_ready, new_pods + old_pods))
        new_ready = sum(map(pod_is_ready, new_pods))
        status = {"observedGeneration": dep["metadata"]["generation"]}
        for key, value in (("replicas", total), ("updatedReplicas", len(new_pods)),
                           ("readyReplicas", ready), ("availableReplicas", ready),
                           ("unavailableReplicas", max(0, total - ready))):
            if value:
                status[key] = value
        conditions = copy.deepcopy(old_status.get("conditions") or [])
        _, unavailable = self._limits(dep, n)
        if ready >= n - unavailable:
            _set_condition(conditions, "Available", True, "MinimumReplicasAvailable",
                           "Deployment has minimum availability.")
        else:
            _set_condition(conditions, "Available", False, "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.")
        rs_name = new_rs["metadata"]["name"]
        progress = self._progress.get(dep["metadata"]["uid"])
        if progress is None or progress.rs_uid != new_rs["metadata"]["uid"]:
            progress = self._progress[dep["metadata"]["uid"]] = _Progress(
                new_rs["metadata"]["uid"], now)
            reason = "NewReplicaSetCreated" if created else "FoundNewReplicaSet"
            verb = "Created new" if created else "Found new"
            _set_condition(conditions, "Progressing", True, reason,
                           f'{verb} replica set "{rs_name}"', progressed=True)
        progressed = (len(new_pods) > old_status.get("updatedReplicas", 0)
                      or total - len(new_pods) < old_status.get("replicas", 0)
                      - old_status.get("updatedReplicas", 0)
                      or ready > old_status.get("readyReplicas", 0))
        current = next((c for c in conditions if c["type"] == "Progressing"), {})
        deadline = dep["spec"].get("progressDeadlineSeconds", 600) \
            * self.config.progress_deadline_scale
        if len(new_pods) == n and total == n and new_ready == n:
            _set_condition(conditions, "Progressing", True, "NewReplicaSetAvailable",
                           f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif progressed:
            progress.last = now
            _set_condition(conditions, "Progressing", True, "ReplicaSetUpdated",
                           f'ReplicaSet "{rs_name}" is progressing.', progressed=True)
        elif current.get("reason") != "NewReplicaSetAvailable" and now - progress.last > deadline:
            _set_condition(conditions, "Progressing", False, "ProgressDeadlineExceeded",
                           f'ReplicaSet "{rs_name}" has timed out progressing.')
        conditions.sort(key=lambda c: c["type"] != "Available")
        status["conditions"] = conditions
        new = copy.deepcopy(dep)
        new["status"] = status
        revision = (new_rs["metadata"].get("annotations") or {}).get(REVISION)
        if revision:
            new["metadata"].setdefault("annotations", {})[REVISION] = revision
        if new != dep:
            self.store.update(_DEP, new, dep)
