"""The cluster test tier: a real Kubernetes control plane (``scripts.localcluster``) with simulated nodes, the
worker acting as the ServiceAccount the Helm chart creates, bound to exactly the rules the chart renders,
and real Celery worker and beat processes.

Fixtures (loaded from ``tests/conftest.py``):

- ``local_cluster`` (session): the cluster, started once per run in a temporary directory and removed at
  the end. Building its binaries the first time takes minutes (``make kube-build``), then they are cached.
- ``worker_kubeconfig`` (session): a kubeconfig for the chart's worker ServiceAccount (a bound token).
- ``kube_cluster`` (test): that cluster registered as aws/us-east-1 with the worker's kubeconfig, and a
  ``ClusterProbe`` to look at it as the admin and to read what the API server audited of the worker.
- ``api`` (test): an API client for a fresh account of the test's own.
- ``celery`` (test): start ``worker`` / ``beat`` processes against the test database, broker and Hub.
"""
from __future__ import annotations

import os
import time
import urllib.error
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout: float = 60.0, what="condition", interval: float = 0.2):
    """Poll ``predicate`` until truthy (returned); ``what`` (a string, or a callable giving one) names it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")


def live_pods(probe: ClusterProbe, ns: str) -> list[dict]:
    """The pods of ``ns`` that are not being deleted."""
    return [p for p in probe.items(f"/api/v1/namespaces/{ns}/pods") if not p["metadata"].get("deletionTimestamp")]


def pod_shas(probe: ClusterProbe, ns: str) -> list[tuple[str, bool]]:
    """For each live pod: the model commit in ``HF_REVISION`` and whether the model fetcher's command carries
    it too."""
    found = []
    for pod in live_pods(probe, ns):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        sha = env.get("HF_REVISION")
        found.append((sha, sha in pod["spec"]["initContainers"][0]["command"]))
    return found


class ClusterProbe:
    """The test's own view of the cluster, as its admin (never through the code under test)."""

    def __init__(self, cluster, worker_user: str):
        self.cluster = cluster
        self.worker_user = worker_user

    def get(self, path: str) -> dict | None:
        try:
            return self.cluster.request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def items(self, path: str) -> list[dict]:
        return (self.get(path) or {}).get("items", [])

    def send(self, method: str, path: str, body: dict | None = None, content_type: str = "application/json") -> dict:
        return self.cluster.request(method, path, body, content_type=content_type)

    def audit_mark(self) -> int:
        """A position in the audit log: ``worker_requests(since=mark)`` reads what came after."""
        return self.cluster.audit_mark()

    def worker_requests(self, since: int = 0) -> list[dict]:
        """Every request the worker's ServiceAccount made, as the API server audited it (ResponseComplete)."""
        return self.cluster.audited(self.worker_user, since)

    def worker_writes(self, since: int = 0) -> list[str]:
        from scripts.localcluster.cluster import WRITE_VERBS

        return [f"{e['verb']} {e['requestURI']}" for e in self.worker_requests(since) if e["verb"] in WRITE_VERBS]


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory):
    from scripts.localcluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("localcluster"))
    cluster.up(quiet=True)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def worker_kubeconfig(local_cluster) -> tuple[str, str]:
    """(kubeconfig text, username) for the chart's worker ServiceAccount, bound to the chart's own rules."""
    from scripts.localcluster.worker import worker_kubeconfig

    return worker_kubeconfig(local_cluster)


@pytest.fixture
def kube_cluster(db, local_cluster, worker_kubeconfig):
    """The local cluster registered as aws/us-east-1 (the worker's identity), and a probe to look at it."""
    from deployments.services import cluster_register

    text, user = worker_kubeconfig
    cluster_register(name="local", vendor="aws", region="us-east-1", kubeconfig_text=text,
                     ingress_domain="endpoints.test")
    return ClusterProbe(local_cluster, user)


@pytest.fixture
def api(db):
    """A client for an account of this test's own (the cluster outlives each test's database rows, so
    names are never reused), with ``.account`` and its namespace ``.ns``."""
    import uuid

    from tests.factories import make_user
    from tests.helpers import user_api

    name = f"t-{uuid.uuid4().hex[:8]}"
    client = user_api(make_user(name))
    client.account, client.ns = name, f"ie-{name}"
    return client


@pytest.fixture
def celery(broker, fake_hub, tmp_path):
    """Start ``worker``/``beat`` processes on demand with the test database, broker and Hub; stopped after.
    Keyword arguments become environment variables of the process."""
    from tests.gatewayrig import database_url
    from tests.helpers import celery_processes

    base = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.CELERY_BROKER_URL,
            "SECRETS_ENCRYPTION_KEY": settings.SECRETS_ENCRYPTION_KEY, "HF_HUB_URL": fake_hub.url,
            "RECONCILE_SWEEP_SECONDS": "1", "RECONCILE_MAX_BACKOFF_SECONDS": "1", "DRIFT_SWEEP_SECONDS": "2",
            "DJANGO_DEBUG": "true", "PYTHONUNBUFFERED": "1"}
    base.pop("HF_HUB_TOKEN", None)
    yield from celery_processes(tmp_path, base)
