"""The background thread that runs the simulated controllers.

Contract: ``ControllerLoop.tick()`` runs one pass - HPAs, then Deployments (ReplicaSets
and pods), then the pod lifecycle, then EndpointSlices - with the store lock held for the
whole pass, so API requests see either none or all of a pass's writes. ``start()`` runs ``tick()`` every
``interval`` seconds on a daemon thread until ``stop()``. Exceptions in a pass are
recorded in ``errors`` (a fake bug must not silently freeze the cluster) and the loop
keeps going.
"""

from __future__ import annotations

import threading
import time
import traceback

from .deployments import DeploymentController
from .endpointslices import EndpointSliceController
from .hpa import HPAController
from .pods import PodSimulator, SimConfig
from .store import ObjectStore


class ControllerLoop:
    def __init__(self, store: ObjectStore, config: SimConfig, interval: float = 0.05,
                 errors: list[str] | None = None):
        self.store = store
        self.interval = interval
        self.errors = errors if errors is not None else []
        self.pods = PodSimulator(store, config)
        self.deployments = DeploymentController(store, config, self.pods)
        self.hpas = HPAController(store)
        self.endpointslices = EndpointSliceController(store)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fakekube-controllers",
                                        daemon=True)

    def tick(self) -> None:
        with self.store.lock:
            now = time.monotonic()
            self.hpas.reconcile_all()
            self.deployments.reconcile_all(now)
            self.pods.reconcile_all(now)
            self.endpointslices.reconcile_all()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                # Capped: a bug that fails every pass must not grow memory without bound.
                if len(self.errors) < 100:
                    self.errors.append(f"controller pass failed\n{traceback.format_exc()}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
