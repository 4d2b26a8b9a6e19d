"""An endpoint's replicas (its pods) read live from its cluster: their container logs and their states."""

from django.conf import settings

from controlplane.errorcodes import Code
from controlplane.errors import NotFound, ServiceUnavailable
from controlplane.names import namespace_name
from endpoints.models import Endpoint

from .kube import Kube, KubeError, kube_for
from .names import owned_selector
from .selectors import cluster_for

SERVER_CONTAINER = "inference"  # the container whose logs are read (Kube.logs' default)
# Waiting reasons after which a container will not start without a change (or a long back-off).
FAILED_WAITING = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                            "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


def _cluster_error(exc: KubeError) -> ServiceUnavailable:
    return ServiceUnavailable(f"The cluster could not be read: {exc}", code=Code.CLUSTER_UNAVAILABLE)


def endpoint_pods(endpoint: Endpoint) -> tuple[Kube, str, list[dict]] | None:
    """``(kube, namespace, pods)``: the endpoint's pods (this installation's and cluster registration's,
    by the owner labels), sorted by name, with the client and namespace to read more from. None when no
    cluster serves the endpoint or nothing was ever applied. Raises KubeError when the cluster cannot be read."""
    cluster = cluster_for(vendor=endpoint.instance.vendor, region=endpoint.instance.region)
    if cluster is None or endpoint.first_applied_at is None:
        return None
    kube = kube_for(cluster)
    namespace = namespace_name(cluster.namespace_prefix, endpoint.account.slug)
    owned = owned_selector(settings.INSTALLATION_ID, cluster.pk, endpoint.pk)
    pods = sorted(kube.list("Pod", namespace, owned), key=lambda p: p["metadata"]["name"])
    return kube, namespace, pods


def endpoint_logs(*, endpoint: Endpoint, tail: int, replica: str | None = None) -> str:
    """The last ``tail`` lines of each replica's server container (or of ``replica`` only: a name
    ``endpoint_replicas`` lists), each block headed ``==> <pod> <==``. NotFound for an unknown replica;
    ServiceUnavailable if the cluster is down."""
    try:
        found = endpoint_pods(endpoint)
        if found is None:
            return ""
        kube, namespace, pods = found
        names = [p["metadata"]["name"] for p in pods]
        if replica is not None:
            if replica not in names:
                raise NotFound(f"No replica '{replica}' (replicas: {', '.join(names) or 'none'})")
            names = [replica]
        blocks = [f"==> {pod} <==\n{kube.logs(namespace, pod, tail=tail)}" for pod in names]
    except KubeError as exc:
        raise _cluster_error(exc) from exc
    return "\n".join(blocks)


def endpoint_replicas(*, endpoint: Endpoint) -> list[dict]:
    """Each replica (pod) of the endpoint, by name, as ``replica_view`` describes it; [] when nothing
    was applied. ServiceUnavailable if the cluster is down."""
    try:
        found = endpoint_pods(endpoint)
    except KubeError as exc:
        raise _cluster_error(exc) from exc
    return [] if found is None else [replica_view(pod) for pod in found[2]]


def replica_view(pod: dict) -> dict:
    """One pod as the replicas API shows it::

        {"name": <pod name: the logs API's ``replica``>,
         "state": "pending" | "initializing" | "running" | "failed" | "terminating" | "succeeded" | "unknown",
         "reason": <why it is not running (a waiting reason, Unschedulable, ...), else None>,
         "ready": <bool>, "node": <node name or None>, "restarts": <container restarts, summed>,
         "startedAt": <when the kubelet started the pod, RFC 3339, or None>,
         "lastFailure": {"container", "reason", "message", "exitCode", "finishedAt"} | None}

    ``state``: ``pending`` until every container started (scheduling, image pull, creating), ``running``
    when ready, ``initializing`` when started but not ready yet, ``failed`` when a container cannot run
    (crash loop, image pull failure, bad config) or the pod failed, ``terminating`` once deleted.
    ``lastFailure`` is the latest termination of a container that did not complete cleanly (its last
    terminated state, or the current one), whichever container it was.
    """
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    waiting = [(c.get("state") or {}).get("waiting") or {} for c in containers]
    failing = next((w.get("reason") for w in waiting if w.get("reason") in FAILED_WAITING), None)
    pending_reason = next((w.get("reason") for w in waiting if w.get("reason")), None)
    unscheduled = next((c.get("reason") for c in status.get("conditions") or []
                        if c.get("type") == "PodScheduled" and c.get("status") == "False"), None)
    phase = status.get("phase") or "Unknown"
    reason = None
    if meta.get("deletionTimestamp"):
        state = "terminating"
    elif phase == "Failed":
        state, reason = "failed", status.get("reason") or "Failed"
    elif phase == "Succeeded":
        state = "succeeded"
    elif failing:
        state, reason = "failed", failing
    elif phase == "Pending":
        state, reason = "pending", unscheduled or pending_reason or "Pending"
    elif phase == "Running":
        state = "running" if ready else "initializing"
        reason = None if ready else pending_reason or "ContainersNotReady"
    else:
        state = "unknown"
    return {"name": meta.get("name"), "state": state, "reason": reason, "ready": ready,
            "node": spec.get("nodeName") or None,
            "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
            "startedAt": status.get("startTime"), "lastFailure": _last_failure(containers)}


def _last_failure(containers: list[dict]) -> dict | None:
    failures = []
    for c in containers:
        for terminated in ((c.get("lastState") or {}).get("terminated"), (c.get("state") or {}).get("terminated")):
            if not terminated:
                continue
            if (terminated.get("exitCode") or 0) == 0 and terminated.get("reason") in (None, "Completed"):
                continue  # a clean exit is no failure
            failures.append({"container": c.get("name"), "reason": terminated.get("reason"),
                                 "message": terminated.get("message"), "exitCode": terminated.get("exitCode"),
                                 "finishedAt": terminated.get("finishedAt")})
    # RFC 3339 UTC stamps sort as strings; a failure without a time sorts first (oldest).
    return max(failures, key=lambda f: f["finishedAt"] or "", default=None)
