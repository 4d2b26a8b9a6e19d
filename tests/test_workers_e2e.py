"""End to end with real Celery worker and beat processes, the real broker, and the fake API server.

API create -> on_commit message -> worker reconciles -> objects in the fake -> running -> API delete ->
nothing left. A worker SIGKILLed in the middle of a reconcile loses its message; beat's sweep finds the
endpoint unconverged and a fresh worker converges it.
"""

import os
import signal
import time
from pathlib import Path

import pytest
from django.conf import settings

from endpoints.models import Endpoint
from tests.factories import endpoint_spec, make_user
from tests.gatewayrig import database_url
from tests.helpers import celery_processes, expect, user_api

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processes(broker, fake_hub, tmp_path):
    """Start worker/beat processes on demand, with the test database, broker and Hub; stop them after."""
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.CELERY_BROKER_URL,
           "SECRETS_ENCRYPTION_KEY": settings.SECRETS_ENCRYPTION_KEY, "HF_HUB_URL": fake_hub.url,
           "RECONCILE_SWEEP_SECONDS": "1", "RECONCILE_MAX_BACKOFF_SECONDS": "1", "DJANGO_DEBUG": "true",
           "PYTHONUNBUFFERED": "1"}
    env.pop("HF_HUB_TOKEN", None)
    yield from celery_processes(tmp_path, env)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def state(name: str) -> str | None:
    return Endpoint.objects.filter(name=name).values_list("state", flat=True).first()


def test_api_create_runs_and_api_delete_leaves_nothing(processes, cluster, fake_kube):
    user = make_user("e2e")
    api = user_api(user)
    processes("worker")
    processes("beat")
    r = api.post("/v2/endpoint/e2e", endpoint_spec("svc", model={"secrets": {"K": "v"}}), format="json")
    assert r.status_code == 202, r.json()
    wait_for(lambda: state("svc") == "running", what="running")
    body = api.get("/v2/endpoint/e2e/svc").json()
    assert body["status"]["url"] and body["model"]["revision"] == "1" * 40
    owned = [(kind, o["metadata"]["name"]) for kind in ("deployments", "services", "horizontalpodautoscalers",
                                                         "secrets") for o in fake_kube.objects(kind, "ie-e2e")
             if o["metadata"].get("labels", {}).get("endpoints.controlplane.dev/id")]
    assert len(owned) == 4, owned

    expect(api.delete("/v2/endpoint/e2e/svc"), 200)
    wait_for(lambda: not Endpoint.objects.filter(name="svc").exists(), what="row gone")
    expect(api.get("/v2/endpoint/e2e/svc"), 404)
    left = [o["metadata"]["name"] for kind in ("deployments", "services", "horizontalpodautoscalers", "secrets")
            for o in fake_kube.objects(kind, "ie-e2e") if o["metadata"]["name"].startswith("ep-svc")]
    assert left == []


def test_worker_killed_mid_reconcile_is_recovered_by_the_sweep(processes, cluster, fake_kube, broker):
    user = make_user("crash")
    api = user_api(user)
    fake_kube.hang_next(1, 30)  # the worker's first Kubernetes call hangs: it is mid-reconcile
    worker = processes("worker")
    expect(api.post("/v2/endpoint/crash", endpoint_spec("svc"), format="json"), 202)
    wait_for(lambda: any(r.verb for r in fake_kube.requests), what="the worker to reach Kubernetes")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    assert state("svc") == "pending"
    broker.clear()  # whatever the dead worker left queued or unacked is gone too: only the sweep remains
    processes("worker")
    processes("beat")
    wait_for(lambda: state("svc") == "running", what="the sweep to converge it")
