"""Status derivation: live Deployment, Pods and Events -> the HF state, a message, replica counts.

``observe`` is pure; ``observe_live`` reads what it needs through a ``Kube`` first (one version of an
endpoint: the reconciler's, and each of a canary rollout's two).

Rules (first match wins), for an endpoint the user wants running:
- no Deployment yet -> ``pending``;
- pods of the *current* template failing (crash loop, image pull, unschedulable), pods the cluster refuses
  to create (the ReplicaSet's ``ReplicaFailure``, e.g. the namespace's ResourceQuota), or the rollout past
  its progress deadline -> ``updateFailed`` while older pods still serve, else ``failed``; the message says
  which;
- the rollout complete (observed generation current, every replica updated) with a ready replica ->
  ``running``;
- a rollout under way while older pods serve -> ``updating``;
- otherwise -> ``initializing`` (pods starting).
"""

import json
from dataclasses import dataclass

from .names import ANNOTATION_TEMPLATE

FAILING_REASONS = {
    "CrashLoopBackOff": "the model server keeps crashing (CrashLoopBackOff)",
    "ErrImagePull": "the image cannot be pulled (ErrImagePull)",
    "ImagePullBackOff": "the image cannot be pulled (ImagePullBackOff)",
    "InvalidImageName": "the image name is invalid",
    "CreateContainerConfigError": "the container configuration is invalid",
    "RunContainerError": "the container cannot start",
}


@dataclass(frozen=True)
class Observation:
    state: str
    message: str
    ready: int
    target: int


def _condition(obj: dict, kind: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), {})


def _pod_problem(pod: dict, events: list[dict]) -> str | None:
    status = pod.get("status", {})
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FAILING_REASONS:
            detail = waiting.get("message") or ""
            return f"{FAILING_REASONS[reason]}{': ' + detail if detail else ''}"
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        name = pod["metadata"]["name"]
        event = next((e for e in events if e.get("involvedObject", {}).get("name") == name
                      and e.get("reason") == "FailedScheduling"), None)
        detail = (event or {}).get("message") or scheduled.get("message") or "no node fits"
        return f"no node can run the endpoint (Unschedulable): {detail}"
    return None


def _is_ready(pod: dict) -> bool:
    return _condition(pod, "Ready").get("status") == "True" and not pod["metadata"].get("deletionTimestamp")


def observe(*, deployment: dict | None, pods: list[dict], events: list[dict], template_hash: str) -> Observation:
    """Derive the state of a running-intent endpoint (see the module docstring for the rules)."""
    if deployment is None:
        return Observation("pending", "Endpoint waiting to be scheduled", 0, 0)
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    target = spec.get("replicas", 1)
    # Ready pods, counted directly: the Deployment's own readyReplicas lags its pods by a controller pass.
    ready = sum(1 for p in pods if _is_ready(p))
    current = [p for p in pods if (p["metadata"].get("annotations") or {}).get(ANNOTATION_TEMPLATE) == template_hash]
    older_ready = [p for p in pods if p not in current and _is_ready(p)]
    problems = [problem for problem in (_pod_problem(p, events) for p in current) if problem]
    refused = _condition(deployment, "ReplicaFailure")  # copied from the ReplicaSet by the deployment controller
    if not problems and refused.get("status") == "True":
        problems = [f"Kubernetes refuses to create its pods ({refused.get('reason') or 'FailedCreate'}): "
                    f"{refused.get('message', '')}".rstrip(": ")]
    progressing = _condition(deployment, "Progressing")
    if not problems and progressing.get("reason") == "ProgressDeadlineExceeded":
        problems = [f"the rollout did not finish in time: {progressing.get('message', '')}".rstrip(": ")]
    if problems:
        if older_ready:
            return Observation("updateFailed", f"Update failed, the previous version keeps serving: {problems[0]}",
                               ready, target)
        return Observation("failed", f"Endpoint failed to deploy: {problems[0]}", ready, target)
    generation_seen = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    complete = generation_seen and (status.get("updatedReplicas", 0) or 0) >= target and not older_ready
    current_ready = sum(1 for p in current if _is_ready(p))
    if complete and current_ready >= 1:
        return Observation("running", "Endpoint is ready", ready, target)
    if older_ready:
        return Observation("updating", "Endpoint is updating; the previous version keeps serving", ready, target)
    return Observation("initializing", "Endpoint is initializing: pods are starting", ready, target)


def reading(kind: str, obj: dict) -> str:
    """What ``observe`` reads of a Pod or a Deployment, as a comparable string: two versions of an object
    with the same reading derive the same state, so a change elsewhere (a condition's timestamp, a pod being
    scheduled or its containers created, managed fields) needs no pass. Kept beside ``observe``: whatever it
    starts reading must be read here too."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if kind == "Pod":
        failing = [(w.get("reason"), w.get("message")) for w in (
            (cs.get("state") or {}).get("waiting") or {}
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []))
            if w.get("reason") in FAILING_REASONS]
        scheduled = _condition(obj, "PodScheduled")
        unschedulable = scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
        relevant = [(meta.get("annotations") or {}).get(ANNOTATION_TEMPLATE), _is_ready(obj), failing,
                    unschedulable and (scheduled.get("message") or True)]
    else:
        refused, progressing = _condition(obj, "ReplicaFailure"), _condition(obj, "Progressing")
        relevant = [meta.get("generation"), (obj.get("spec") or {}).get("replicas"), bool(status),
                    status.get("observedGeneration"), status.get("updatedReplicas"), status.get("readyReplicas"),
                    [refused.get("status"), refused.get("reason"), refused.get("message")],
                    progressing.get("reason") == "ProgressDeadlineExceeded" and progressing.get("message")]
    return json.dumps(relevant, default=str)


def live_deployment(kube, namespace: str, spec: dict, live: dict | None) -> dict | None:
    """The Deployment ``spec`` renders as the apply left it (``live``), read again when it has no status yet
    (a fresh create answers before any controller ran)."""
    if live and not live.get("status"):
        return kube.get("Deployment", namespace, spec["metadata"]["name"]) or live
    return live


def observe_live(kube, namespace: str, spec: dict, deployment: dict | None, pod_selector: str) -> Observation:
    """``observe`` for the Deployment rendered as ``spec`` and its pods (``pod_selector``), with the
    namespace's events read only when a pod is unschedulable (for the scheduler's reason)."""
    template_hash = spec["spec"]["template"]["metadata"]["annotations"][ANNOTATION_TEMPLATE]
    pods = kube.list("Pod", namespace, pod_selector)
    observation = observe(deployment=deployment, pods=pods, events=[], template_hash=template_hash)
    if "Unschedulable" in observation.message:
        observation = observe(deployment=deployment, pods=pods, events=kube.list("Event", namespace),
                              template_hash=template_hash)
    return observation


def service_serving(kube, namespace: str, service: str) -> bool:
    """Whether ``service`` routes to a ready pod: a ready endpoint in its EndpointSlices. A pod's readiness
    reaches them a controller pass after the pod itself, so a version judged ready by its pods may not be
    reachable through its Service yet. An endpoint whose ``ready`` is unset counts as ready (the API's rule)."""
    slices = kube.list("EndpointSlice", namespace, f"kubernetes.io/service-name={service}")
    return any((e.get("conditions") or {}).get("ready") is not False
               for s in slices for e in s.get("endpoints") or [])
