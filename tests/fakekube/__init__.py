"""A fake Kubernetes API server for tests, spoken to over real HTTP by the official client.

    from tests.fakekube import FakeKube
    with FakeKube(pod_ready_seconds=0.2) as kube:
        apps = kubernetes.client.AppsV1Api(kube.api_client())

Module map: fake.py (the FakeKube facade), server.py (HTTP, routing, logging, faults),
api.py (REST semantics), store.py (objects + GC), validation.py, defaults.py, patches.py,
selectors.py, errors.py (Status bodies), faults.py, records.py, resources.py (served
kinds + discovery), controllers.py (loop) driving deployments.py, pods.py, hpa.py and
events.py, and fixtures.py (the ``fake_kube`` pytest fixture).
"""

from .fake import DEFAULT_K8S_VERSION, FakeKube
from .pods import CRASHLOOP_MARKER, IMAGEPULL_MARKER, UNSCHEDULABLE_MESSAGE
from .records import RequestRecord

__all__ = ["FakeKube", "RequestRecord", "DEFAULT_K8S_VERSION", "CRASHLOOP_MARKER",
           "IMAGEPULL_MARKER", "UNSCHEDULABLE_MESSAGE"]
