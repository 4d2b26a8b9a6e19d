"""HorizontalPodAutoscaler (autoscaling/v2) controller without metrics.

Contract: ``HPAController.reconcile_all()`` (store lock held) clamps the target
Deployment's ``spec.replicas`` into ``[minReplicas (default 1), maxReplicas]`` - writing
the Deployment directly, so the write is not in the request log and bumps its generation
like any spec change - and keeps HPA status current: currentReplicas, desiredReplicas,
lastScaleTime, observedGeneration and AbleToScale / ScalingActive / ScalingLimited
conditions. A missing target yields AbleToScale=False/FailedGetScale; a target at 0
replicas is left alone (ScalingActive=False/ScalingDisabled), as the real HPA does.

Simplified: no metrics, so replicas only ever move to the nearest bound.
"""

from __future__ import annotations

import copy

from .events import record_event
from .resources import RESOURCES
from .store import ObjectStore, rfc3339

_HPA, _DEP = RESOURCES["horizontalpodautoscalers"], RESOURCES["deployments"]


def _condition(old: list[dict], ctype: str, status: bool, reason: str, message: str) -> dict:
    value = "True" if status else "False"
    prev = next((c for c in old if c["type"] == ctype), None)
    since = prev["lastTransitionTime"] if prev and prev["status"] == value else rfc3339()
    return {"type": ctype, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": since}


class HPAController:
    def __init__(self, store: ObjectStore):
        self.store = store

    def reconcile_all(self) -> None:
        for hpa in self.store.list_live("horizontalpodautoscalers"):
            self._reconcile(hpa)

    def _reconcile(self, hpa: dict) -> None:
        spec, ns = hpa["spec"], hpa["metadata"]["namespace"]
        old_status = hpa.get("status") or {}
        old_conds = old_status.get("conditions") or []
        status = {"observedGeneration": hpa["metadata"]["generation"],
                  "desiredReplicas": old_status.get("desiredReplicas", 0)}
        for key in ("currentReplicas", "lastScaleTime"):
            if key in old_status:
                status[key] = old_status[key]
        ref = spec.get("scaleTargetRef") or {}
        dep = self.store.get_live("deployments", ns, ref.get("name", "")) \
            if ref.get("kind") == "Deployment" else None
        if dep is None:
            status["conditions"] = [_condition(
                old_conds, "AbleToScale", False, "FailedGetScale",
                f'the HPA controller was unable to get the target\'s current scale: '
                f'{ref.get("kind", "").lower()}s/scale "{ref.get("name")}" not found')]
            return self._write(hpa, status)
        low, high = spec.get("minReplicas") or 1, spec["maxReplicas"]
        current = dep["spec"].get("replicas", 1)
        status["currentReplicas"] = (dep.get("status") or {}).get("replicas", 0)
        if current == 0:
            status["conditions"] = [
                _condition(old_conds, "AbleToScale", True, "SucceededGetScale",
                           "the HPA controller was able to get the target's current scale"),
                _condition(old_conds, "ScalingActive", False, "ScalingDisabled",
                           "scaling is disabled since the replica count of the target is zero")]
            return self._write(hpa, status)
        desired = min(max(current, low), high)
        status["desiredReplicas"] = desired
        if desired != current:
            new_dep = copy.deepcopy(dep)
            new_dep["spec"]["replicas"] = desired
            self.store.update(_DEP, new_dep, dep)
            status["lastScaleTime"] = rfc3339()
            why = "above Spec.MaxReplicas" if current > high else "below Spec.MinReplicas"
            record_event(self.store, hpa, "SuccessfulRescale",
                         f"New size: {desired}; reason: Current number of replicas {why}",
                         component="horizontal-pod-autoscaler")
        limited = current != desired or desired in (low, high)
        status["conditions"] = [
            _condition(old_conds, "AbleToScale", True, "ReadyForNewScale",
                       "recommended size matches current size"),
            _condition(old_conds, "ScalingActive", True, "ValidMetricFound",
                       "the HPA was able to successfully calculate a replica count"),
            _condition(old_conds, "ScalingLimited", limited,
                       "TooManyReplicas" if desired == high and limited else
                       "TooFewReplicas" if limited else "DesiredWithinRange",
                       "the desired replica count is at a bound" if limited else
                       "the desired count is within the acceptable range")]
        self._write(hpa, status)

    def _write(self, hpa: dict, status: dict) -> None:
        if hpa.get("status") == status:
            return
        new = copy.deepcopy(hpa)
        new["status"] = status
        self.store.update(_HPA, new, hpa)
