"""``FakeKube``: the public face of the fake Kubernetes API server.

Contract:
- Constructing a FakeKube starts nothing; ``start()`` binds 127.0.0.1 on a random port,
  serves HTTP from a daemon thread and runs the simulated controllers every
  ``controller_interval`` seconds; ``stop()`` undoes both. Also a context manager.
- Clients connect with the official ``kubernetes`` package via ``configuration()``,
  ``api_client()`` or a kubeconfig from ``write_kubeconfig()``; no auth is required.
- Inspection helpers (``requests``, ``writes()``, ``objects()``, ``get_object()``) return
  copies, so tests cannot corrupt server state by mutating what they read.
- The namespaces in ``namespaces`` exist from the start (like a fresh cluster); creating a
  namespaced object elsewhere answers 404 until its Namespace is created.
- ``internal_errors`` collects tracebacks of bugs in the fake itself (HTTP handler or
  controller pass); the ``fake_kube`` fixture fails a test that leaves any behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import yaml

from .api import KubeApi, Route
from .controllers import ControllerLoop
from .faults import FaultInjector
from .pods import SimConfig
from .records import RequestLog, RequestRecord
from .resources import RESOURCES
from .server import FakeApiServer, ServerContext
from .store import ObjectStore

# Recent, and shipped with schemas by kubernetes_validate 1.37 (which has 1.2x..1.37).
DEFAULT_K8S_VERSION = "1.33"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _resource(kind_plural: str):
    try:
        return RESOURCES[kind_plural]
    except KeyError:
        raise KeyError(f"fakekube does not serve {kind_plural!r}; known kinds: "
                       f"{', '.join(sorted(RESOURCES))}") from None


class FakeKube:
    def __init__(self, k8s_version: str = DEFAULT_K8S_VERSION, pod_ready_seconds: float = 0.5,
                 progress_deadline_scale: float = 0.02, gpu_capacity: int = 8,
                 controller_interval: float = 0.05,
                 namespaces: tuple[str, ...] = DEFAULT_NAMESPACES):
        # Fail fast on a version kubernetes_validate has no schemas for.
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "probe"}}, k8s_version, strict=True)
        self.k8s_version = k8s_version
        self.config = SimConfig(pod_ready_seconds, progress_deadline_scale, gpu_capacity)
        self.store = ObjectStore()
        self.internal_errors: list[str] = []
        self._faults = FaultInjector()
        self._log = RequestLog()
        self._api = KubeApi(self.store, k8s_version)
        self._controllers = ControllerLoop(self.store, self.config, controller_interval,
                                           self.internal_errors)
        self._server: FakeApiServer | None = None
        for ns in namespaces:
            self.seed("namespaces", {"metadata": {"name": ns}})

    # ---- simulation knobs (read by the controllers on every pass) ----

    @property
    def gpu_capacity(self) -> int:
        return self.config.gpu_capacity

    @gpu_capacity.setter
    def gpu_capacity(self, value: int) -> None:
        self.config.gpu_capacity = value

    @property
    def pod_ready_seconds(self) -> float:
        return self.config.pod_ready_seconds

    @pod_ready_seconds.setter
    def pod_ready_seconds(self, value: float) -> None:
        self.config.pod_ready_seconds = value

    @property
    def progress_deadline_scale(self) -> float:
        return self.config.progress_deadline_scale

    @progress_deadline_scale.setter
    def progress_deadline_scale(self, value: float) -> None:
        self.config.progress_deadline_scale = value

    # ---- lifecycle ----

    def start(self) -> FakeKube:
        if self._faults.stopping.is_set():
            raise RuntimeError("a stopped FakeKube cannot be restarted; create a new one")
        if self._server is None:
            context = ServerContext(self._api, self._faults, self._log, self.k8s_version,
                                    self.internal_errors)
            self._server = FakeApiServer(context)
            self._server.start()
            self._controllers.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent). A stopped FakeKube cannot be started again."""
        if self._faults.stopping.is_set():
            return
        self._faults.stopping.set()  # wake hung requests so their threads finish
        self._controllers.stop()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeKube.start() has not been called")
        return self._server.url

    # ---- client plumbing ----

    def configuration(self) -> kubernetes.client.Configuration:
        return kubernetes.client.Configuration(host=self.url)

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.configuration())

    def write_kubeconfig(self, path, context: str = "fake", namespace: str = "default") -> Path:
        """Write a kubeconfig whose current context points at this server (no auth)."""
        path = Path(path)
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                       "namespace": namespace}}],
            "current-context": context,
        }))
        return path

    # ---- request log ----

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    def writes(self) -> list[RequestRecord]:
        """Write requests received over HTTP (including ones answered with an error)."""
        return [r for r in self._log.snapshot() if r.is_write]

    def clear_requests(self) -> None:
        self._log.clear()

    # ---- state inspection and seeding (not logged) ----

    def objects(self, kind_plural: str, namespace: str | None = None) -> list[dict]:
        return self.store.list(_resource(kind_plural).plural, namespace)

    def get_object(self, kind_plural: str, namespace: str | None, name: str) -> dict | None:
        return self.store.get(_resource(kind_plural).plural, namespace, name)

    def seed(self, kind_plural: str, obj: dict) -> dict:
        """Create an object as if a client had POSTed it (validated, defaulted), unlogged."""
        rt = _resource(kind_plural)
        namespace = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
        _, created, _ = self._api.handle(Route("create", rt, namespace), {},
                                         json.dumps(obj).encode(), "application/json")
        return created

    def add_pod_log(self, namespace: str, pod: str, lines: list[str],
                    container: str | None = None) -> None:
        """Append log lines to a pod's container (its first container by default)."""
        with self.store.lock:
            obj = self.store.get_live("pods", namespace, pod)
            if obj is None:
                raise KeyError(f"pod {namespace}/{pod} not found")
            name = container or obj["spec"]["containers"][0]["name"]
            entries = self.store.logs.setdefault((obj["metadata"]["uid"], name), [])
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
            entries.extend((stamp, line) for line in lines)

    # ---- fault injection ----

    def fail_next(self, n: int, status: int = 500, retry_after: int | None = None,
                  methods=None) -> None:
        """The next ``n`` matching requests fail with ``status`` and are not applied.

        ``methods``: HTTP methods ("PATCH") and/or verbs ("create"); None matches all."""
        self._faults.fail_next(n, status, retry_after, methods)

    def hang_next(self, n: int, seconds: float) -> None:
        """The next ``n`` requests wait ``seconds`` and are then handled normally."""
        self._faults.hang_next(n, seconds)

    def set_failure_rate(self, p: float, statuses=(500, 503, 429, 409), seed: int = 0) -> None:
        """Each request fails with probability ``p`` (status drawn from ``statuses``)."""
        self._faults.set_failure_rate(p, statuses, seed)

    def unreachable(self, flag: bool = True) -> None:
        """While True, every connection is closed without an answer (API down)."""
        self._faults.unreachable = flag

    def hold_endpointslices(self, flag: bool = True) -> None:
        """While True, EndpointSlices stop following pods (the real controller lagging behind them)."""
        self._controllers.endpointslices.held = flag

    def reset_faults(self) -> None:
        self._faults.reset()

    # ---- controller helpers ----

    def tick(self) -> None:
        """Run one controller pass synchronously (on top of the background loop)."""
        self._controllers.tick()

    def set_pod_ready(self, namespace: str, deployment_name: str) -> None:
        """Force the Deployment's current pods Running+Ready now, whatever their image.

        Pods created later are not forced. Runs a few controller passes before returning so
        the Deployment status already reflects the ready pods."""
        with self.store.lock:
            dep = self.store.get_live("deployments", namespace, deployment_name)
            if dep is None:
                raise KeyError(f"deployment {namespace}/{deployment_name} not found")
            rs_uids = {rs["metadata"]["uid"] for rs in self.store.list_live("replicasets",
                                                                            namespace)
                       if any(r.get("uid") == dep["metadata"]["uid"]
                              for r in rs["metadata"].get("ownerReferences") or [])}
            for pod in self.store.list_live("pods", namespace):
                if any(r.get("uid") in rs_uids
                       for r in pod["metadata"].get("ownerReferences") or []):
                    self._controllers.pods.force_ready(pod["metadata"]["uid"])
            for _ in range(3):
                self.tick()

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0,
                   interval: float = 0.02, message: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy; return that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {message}")
            time.sleep(interval)
