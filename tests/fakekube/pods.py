"""Pod lifecycle simulation: a stand-in for the scheduler and the kubelet.

Contract: ``PodSimulator.reconcile_all(now)`` (store lock held) moves every pod through
its lifecycle and writes pod status only when it changed (so resourceVersions do not churn):

- scheduling: a pod whose containers ask for more ``nvidia.com/gpu`` (requests or limits)
  than ``config.gpu_capacity`` stays Pending with PodScheduled=False/Unschedulable and a
  ``FailedScheduling`` Warning event; otherwise it is bound to one of three fake nodes.
- containers wait in ``ContainerCreating`` for ``config.pod_ready_seconds`` after binding,
  then, by image name marker:
  * ``crashloop``: Running pod, container waiting ``CrashLoopBackOff`` with restartCount
    growing once per ``pod_ready_seconds``, never ready; logs a traceback each restart;
    ``BackOff`` Warning events.
  * ``imagepullfail``: Pending pod, container alternating ``ErrImagePull`` /
    ``ImagePullBackOff``; ``Failed`` and ``BackOff`` events; no logs.
  * anything else: Running and Ready, with a few startup log lines.
- ``force_ready(uid)`` makes a pod Running+Ready at the next pass regardless of markers.

Simplified: no init containers, probes, resource accounting per node, or pod eviction.
"""

from __future__ import annotations

import copy
import time
import zlib
from dataclasses import dataclass, field

from .events import record_event
from .resources import RESOURCES
from .store import ObjectStore, rfc3339

CRASHLOOP_MARKER = "crashloop"
IMAGEPULL_MARKER = "imagepullfail"
GPU = "nvidia.com/gpu"
NODES = ["fake-node-1", "fake-node-2", "fake-node-3"]
UNSCHEDULABLE_MESSAGE = "0/3 nodes are available: insufficient nvidia.com/gpu"
_PODS = RESOURCES["pods"]


@dataclass
class SimConfig:
    """Knobs shared by the simulated controllers; FakeKube exposes them as attributes."""
    pod_ready_seconds: float = 0.5
    progress_deadline_scale: float = 0.02
    gpu_capacity: int = 8


@dataclass
class _PodState:
    scheduled: float | None = None      # monotonic time the pod was bound
    scheduled_wall: str = ""
    pod_ip: str = ""
    forced_ready: bool = False
    started_wall: dict[str, str] = field(default_factory=dict)   # container -> first start
    starts_logged: dict[str, int] = field(default_factory=dict)  # container -> runs logged
    periods_reported: dict[str, int] = field(default_factory=dict)
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)  # type -> (status, time)
    flags: set[str] = field(default_factory=set)  # one-shot events already recorded


def gpu_request(pod_spec: dict) -> int:
    total = 0
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        wanted = [int(str((res.get(k) or {}).get(GPU, 0))) for k in ("requests", "limits")]
        total += max(wanted)
    return total


def pod_is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _qos_class(pod_spec: dict) -> str:
    containers = pod_spec.get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for key in ("cpu", "memory"):
            if key not in limits or requests.get(key, limits[key]) != limits[key]:
                return "Burstable"
    return "Guaranteed"


def _log_time() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"


class PodSimulator:
    def __init__(self, store: ObjectStore, config: SimConfig):
        self.store = store
        self.config = config
        self._states: dict[str, _PodState] = {}

    def force_ready(self, uid: str) -> None:
        self._states.setdefault(uid, _PodState()).forced_ready = True

    def reconcile_all(self, now: float) -> None:
        live = set()
        for pod in self.store.list_live("pods"):
            live.add(pod["metadata"]["uid"])
            self._reconcile(pod, now)
        for uid in set(self._states) - live:
            del self._states[uid]

    # ---- helpers ----

    def _condition(self, st: _PodState, ctype: str, status: bool, reason: str | None = None,
                   message: str | None = None) -> dict:
        value = "True" if status else "False"
        if st.conditions.get(ctype, ("",))[0] != value:
            st.conditions[ctype] = (value, rfc3339())  # stable until the status flips
        cond = {"type": ctype, "status": value, "lastTransitionTime": st.conditions[ctype][1]}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def _log(self, pod: dict, container: str, lines: list[str]) -> None:
        entries = self.store.logs.setdefault((pod["metadata"]["uid"], container), [])
        entries.extend((_log_time(), line) for line in lines)

    def _write(self, pod: dict, status: dict, node: str | None = None) -> None:
        if pod.get("status") == status and (node is None or pod["spec"].get("nodeName")):
            return
        new = copy.deepcopy(pod)
        new["status"] = status
        if node and not new["spec"].get("nodeName"):
            new["spec"]["nodeName"] = node  # what the scheduler's binding does
        self.store.update(_PODS, new, pod)

    # ---- lifecycle ----

    def _reconcile(self, pod: dict, now: float) -> None:
        uid = pod["metadata"]["uid"]
        st = self._states.setdefault(uid, _PodState())
        spec = pod["spec"]
        qos = _qos_class(spec)
        if st.scheduled is None:
            if gpu_request(spec) > self.config.gpu_capacity and not st.forced_ready:
                if "unschedulable" not in st.flags:
                    st.flags.add("unschedulable")
                    record_event(self.store, pod, "FailedScheduling", UNSCHEDULABLE_MESSAGE,
                                 "Warning", "default-scheduler")
                cond = self._condition(st, "PodScheduled", False, "Unschedulable",
                                       UNSCHEDULABLE_MESSAGE)
                self._write(pod, {"phase": "Pending", "conditions": [cond], "qosClass": qos})
                return
            st.scheduled, st.scheduled_wall = now, rfc3339()
            st.pod_ip = self.store.alloc_ip("10.244")
        node_index = zlib.crc32(uid.encode()) % len(NODES)
        node = spec.get("nodeName") or NODES[node_index]
        if "scheduled" not in st.flags:
            st.flags.add("scheduled")
            record_event(self.store, pod, "Scheduled", f"Successfully assigned "
                         f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']} to {node}",
                         component="default-scheduler")
        elapsed = now - st.scheduled
        statuses = [self._container(pod, st, c, elapsed)
                    for c in spec.get("containers") or []]
        unready = [s["name"] for s in statuses if not s["ready"]]
        never_started = any("waiting" in s["state"] and s["restartCount"] == 0
                            for s in statuses)
        ready = not unready
        msg = f"containers with unready status: [{' '.join(unready)}]" if unready else None
        host_ip = f"172.18.0.{node_index + 2}"
        status = {
            "phase": "Pending" if never_started else "Running",
            "conditions": [
                self._condition(st, "PodReadyToStartContainers", elapsed >= 0),
                self._condition(st, "Initialized", True),
                self._condition(st, "Ready", ready, None if ready else "ContainersNotReady", msg),
                self._condition(st, "ContainersReady", ready,
                                None if ready else "ContainersNotReady", msg),
                self._condition(st, "PodScheduled", True),
            ],
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": st.pod_ip, "podIPs": [{"ip": st.pod_ip}],
            "startTime": st.scheduled_wall, "qosClass": qos,
            "containerStatuses": statuses,
        }
        self._write(pod, status, node)

    def _container(self, pod: dict, st: _PodState, c: dict, elapsed: float) -> dict:
        name, image = c["name"], c.get("image", "")
        base = {"name": name, "image": image, "imageID": "", "restartCount": 0,
                "ready": False, "started": False}
        prs = self.config.pod_ready_seconds
        period = max(prs, 0.05)
        if st.forced_ready:
            return self._running(pod, st, c, base)
        if elapsed < prs:
            return {**base, "state": {"waiting": {"reason": "ContainerCreating"}}}
        n = int((elapsed - prs) / period)
        if IMAGEPULL_MARKER in image:
            return self._pull_failing(pod, st, c, base, n)
        if CRASHLOOP_MARKER in image:
            return self._crashlooping(pod, st, c, base, n + 1)
        return self._running(pod, st, c, base)

    def _running(self, pod: dict, st: _PodState, c: dict, base: dict) -> dict:
        name = c["name"]
        if name not in st.started_wall:
            st.started_wall[name] = rfc3339()
            port = ((c.get("ports") or [{}])[0]).get("containerPort", 80)
            self._log(pod, name, ["starting server", "loading model",
                                  "model loaded", f"listening on :{port}"])
            for reason, message in (("Pulled", f'Container image "{c.get("image")}" already '
                                               f'present on machine'),
                                    ("Created", f"Created container: {name}"),
                                    ("Started", f"Started container {name}")):
                record_event(self.store, pod, reason, message,
                             field_path=f"spec.containers{{{name}}}")
        return {**base, "imageID": _image_id(c), "ready": True, "started": True,
                "state": {"running": {"startedAt": st.started_wall[name]}}}

    def _pull_failing(self, pod: dict, st: _PodState, c: dict, base: dict, n: int) -> dict:
        name, image = c["name"], c.get("image", "")
        pull_error = (f'failed to pull and unpack image "{image}": rpc error: code = NotFound '
                      f'desc = {image}: not found')
        if st.periods_reported.get(name, -1) < n:
            st.periods_reported[name] = n
            path = f"spec.containers{{{name}}}"
            if n % 2 == 0:
                record_event(self.store, pod, "Failed", f'Failed to pull image "{image}": '
                             f'{pull_error}', "Warning", field_path=path)
            else:
                record_event(self.store, pod, "BackOff", f'Back-off pulling image "{image}"',
                             field_path=path)
        if n % 2 == 0:
            waiting = {"reason": "ErrImagePull", "message": pull_error}
        else:
            waiting = {"reason": "ImagePullBackOff",
                       "message": f'Back-off pulling image "{image}": ErrImagePull: {pull_error}'}
        return {**base, "state": {"waiting": waiting}}

    def _crashlooping(self, pod: dict, st: _PodState, c: dict, base: dict,
                      restarts: int) -> dict:
        name = c["name"]
        meta = pod["metadata"]
        while st.starts_logged.get(name, 0) < restarts:
            st.starts_logged[name] = st.starts_logged.get(name, 0) + 1
            st.started_wall[name] = rfc3339()
            self._log(pod, name, ["starting server", "Traceback (most recent call last):",
                                  '  File "/app/server.py", line 42, in main',
                                  "RuntimeError: CUDA error: out of memory"])
            record_event(self.store, pod, "BackOff", f"Back-off restarting failed container "
                         f"{name} in pod {meta['name']}_{meta.get('namespace')}({meta['uid']})",
                         "Warning", field_path=f"spec.containers{{{name}}}")
        backoff = min(10 * 2 ** (restarts - 1), 300)
        return {**base, "imageID": _image_id(c), "restartCount": restarts,
                "state": {"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff}s restarting failed container={name} "
                               f"pod={meta['name']}_{meta.get('namespace')}({meta['uid']})"}},
                "lastState": {"terminated": {
                    "exitCode": 1, "reason": "Error", "startedAt": st.started_wall[name],
                    "finishedAt": st.started_wall[name]}}}


def _image_id(c: dict) -> str:
    image = c.get("image", "")
    digest = format(zlib.crc32(image.encode()), "08x") * 8
    return f"docker.io/library/{image.split('@')[0]}@sha256:{digest}"
