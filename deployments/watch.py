"""Watch-driven observation: every registered cluster's Pods and Deployments, followed as they change, each
change that matters queueing its endpoint's reconcile at once.

One process runs it (``manage.py watch_clusters``; make run, compose and the chart start one). Per enabled
cluster and per kind it lists once (this installation's objects of that cluster registration, by label),
then watches from the list's resourceVersion, like an informer: bookmarks keep the version fresh, a watch
ends after ``WATCH_TIMEOUT_SECONDS`` and resumes where it was, an expired version (410) lists again and
treats whatever changed meanwhile as changed. A change matters when what the observer reads of the object
(``observe.reading``: a pod's readiness, failing containers and scheduling; a deployment's generation,
replicas and rollout status) differs from what was last seen. Changes are coalesced for
``WATCH_COALESCE_MS`` and each endpoint is queued once.

Steady state costs each cluster two long-lived requests, renewed every ``WATCH_TIMEOUT_SECONDS``,
whatever the number of endpoints. The reconciler's requeue and the sweeps stay as the safety net: a
change this process misses (it is down, a queue is full) is still found, only later.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from controlplane import queue

from .kube import KubeError, kube_for
from .models import Cluster
from .names import LABEL_ID, owned_selector
from .observe import reading
from .render import CANARY

log = logging.getLogger(__name__)
KINDS = ("Pod", "Deployment")


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _available(deployment: dict) -> bool:
    """The rollout is complete and a replica is available, as the Deployment's status says."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    return (status.get("observedGeneration", 0) >= meta.get("generation", 0)
            and (status.get("updatedReplicas") or 0) >= spec.get("replicas", 1)
            and (status.get("availableReplicas") or 0) >= 1)


def endpoint_of(obj: dict) -> int | None:
    """The endpoint an object belongs to, by its id label (a canary's pods carry ``<id>-canary``)."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_ID, "").removesuffix(f"-{CANARY}")
    return int(value) if value.isdigit() else None


@dataclass
class Stats:
    """Counters for the bench and the tests: API requests made and changes that queued a pass."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    queued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # With ``trace``: endpoint id -> wall-clock time the watch first saw one of its pods ready (the bench's
    # start of "pod ready -> running"), and its Deployment report the rollout complete and available (the
    # part Kubernetes' own controllers take).
    trace: bool = False
    ready_seen: dict[int, float] = field(default_factory=dict, repr=False)
    available_seen: dict[int, float] = field(default_factory=dict, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class Coalescer:
    """Endpoint ids marked changed, each asked for once every ``interval`` seconds by ``run`` (``send``,
    by default ``queue.reconcile_soon``: an endpoint already queued and not yet started is not queued again)."""

    def __init__(self, interval: float, stats: Stats, send=None):
        self.interval, self.stats = interval, stats
        self.send = send or queue.reconcile_soon
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def mark(self, endpoint_id: int) -> None:
        with self._lock:
            self._dirty.add(endpoint_id)
        self._wake.set()

    def flush(self) -> int:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for endpoint_id in sorted(dirty):
            self.send(endpoint_id)
        self.stats.add(queued=len(dirty))
        return len(dirty)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            stop.wait(self.interval)  # let a burst (a rollout's pods) gather
            self.flush()


class KindWatch(threading.Thread):
    """One kind of one cluster: list, then watch, for ever (until ``stop``)."""

    def __init__(self, cluster: Cluster, kind: str, changed: Coalescer, stats: Stats, stop: threading.Event):
        super().__init__(name=f"watch-{cluster.name}-{kind}", daemon=True)
        self.cluster, self.kind, self.changed, self.stats, self.stop = cluster, kind, changed, stats, stop
        self.selector = owned_selector(settings.INSTALLATION_ID, cluster.pk)
        self.seen: dict[str, tuple[int | None, str]] | None = None  # uid -> (endpoint id, observed)
        self.version: str | None = None

    def _note(self, uid: str, endpoint_id: int | None, digest: str | None) -> None:
        before = (self.seen or {}).get(uid)
        if digest is None:
            (self.seen or {}).pop(uid, None)
        elif self.seen is not None:
            self.seen[uid] = (endpoint_id, digest)
        if endpoint_id is not None and (before is None or digest is None or before[1] != digest):
            self.changed.mark(endpoint_id)

    def _list(self, kube) -> None:
        items, self.version = kube.list_versioned(self.kind, self.selector)
        self.stats.add(lists=1)
        current = {o["metadata"]["uid"]: (endpoint_of(o), reading(self.kind, o)) for o in items}
        if self.seen is not None:  # a relist after the version expired: what changed meanwhile is changed
            for uid in set(self.seen) | set(current):
                old, new = self.seen.get(uid), current.get(uid)
                if old != new:
                    endpoint_id = (new or old)[0]
                    if endpoint_id is not None:
                        self.changed.mark(endpoint_id)
        self.seen = current

    def _trace(self, endpoint_id: int, obj: dict) -> None:
        seen = self.stats.ready_seen if self.kind == "Pod" else self.stats.available_seen
        if endpoint_id not in seen and (_ready(obj) if self.kind == "Pod" else _available(obj)):
            seen[endpoint_id] = time.time()

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                kube = kube_for(self.cluster)
                if self.version is None:
                    self._list(kube)
                self.stats.add(watches=1)
                for kind, obj in kube.watch(self.kind, self.selector, self.version,
                                            timeout=settings.WATCH_TIMEOUT_SECONDS):
                    if self.stop.is_set():
                        return
                    meta = obj.get("metadata") or {}
                    if kind == "BOOKMARK":
                        self.version = meta.get("resourceVersion", self.version)
                        continue
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # too old: list again
                            self.version = None
                            break
                        raise KubeError(f"watch error: {obj.get('message')}", status=obj.get("code"), transient=True)
                    self.version = meta.get("resourceVersion", self.version)
                    self.stats.add(events=1)
                    endpoint_id = endpoint_of(obj)
                    if self.stats.trace and endpoint_id is not None:
                        self._trace(endpoint_id, obj)
                    self._note(meta.get("uid", ""), endpoint_id, None if kind == "DELETED" else reading(self.kind, obj))
                failures = 0
            except KubeError as exc:
                if self.stop.is_set():  # stopping: the connection was cut under us
                    return
                if exc.status == 410:
                    self.version = None
                failures += 1
                delay = min(2 ** failures, 30)
                log.warning("watch.failed cluster=%s kind=%s error=%s retry_in=%ss", self.cluster.name, self.kind,
                            exc, delay)
                self.stop.wait(delay)


class Watcher:
    """Every enabled cluster's watches; the cluster list is re-read every ``WATCH_CLUSTERS_SECONDS`` (a
    cluster registered, disabled or edited gets its watches started, stopped or restarted)."""

    def __init__(self, send=None, *, trace: bool = False):
        self.stats = Stats(trace=trace)
        self.changed = Coalescer(settings.WATCH_COALESCE_MS / 1000, self.stats, send)
        self.stop = threading.Event()
        self._clusters: dict[int, tuple[object, threading.Event, list[KindWatch]]] = {}

    def refresh(self) -> None:
        wanted = {c.pk: c for c in Cluster.objects.filter(enabled=True)}
        for pk, (updated, stop, _) in list(self._clusters.items()):
            if pk not in wanted or wanted[pk].updated_at != updated:
                stop.set()
                del self._clusters[pk]
        for pk, cluster in wanted.items():
            if pk not in self._clusters:
                stop = threading.Event()
                watches = [KindWatch(cluster, kind, self.changed, self.stats, stop) for kind in KINDS]
                for watch in watches:
                    watch.start()
                self._clusters[pk] = (cluster.updated_at, stop, watches)
                log.info("watch.started cluster=%s kinds=%s", cluster.name, ",".join(KINDS))

    def run(self) -> None:
        """Until ``stop`` is set: keep the watches in line with the clusters and flush the changes."""
        flusher = threading.Thread(target=self.changed.run, args=(self.stop,), name="watch-coalescer", daemon=True)
        flusher.start()
        try:
            while not self.stop.is_set():
                close_old_connections()
                try:
                    self.refresh()
                except DatabaseError as exc:  # the running watches go on; the list is read again next time
                    log.warning("watch.clusters_unreadable error=%s", exc)
                self.stop.wait(settings.WATCH_CLUSTERS_SECONDS)
        finally:
            for _, stop, _ in self._clusters.values():
                stop.set()
            self.changed.flush()

    def wait_started(self, timeout: float = 30) -> bool:
        """True once every started watch has listed (the bench and tests start measuring then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            watches = [w for _, _, ws in self._clusters.values() for w in ws]
            if watches and all(w.version is not None for w in watches):
                return True
            time.sleep(0.05)
        return False
