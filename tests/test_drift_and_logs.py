"""The drift sweep (one LIST per kind per cluster, zero writes when converged) and the logs API."""

from django.conf import settings

from deployments.drift import drift_sweep
from deployments.names import owner_labels
from deployments.reconcile import ENDPOINT_KINDS
from endpoints.models import Endpoint
from tests.helpers import expect, user_api
from tests.kube_helpers import NS, converge, create


def test_converged_endpoints_cost_one_list_per_kind_and_no_writes(alice, cluster, fake_kube, fake_hub):
    for name in ("a", "b", "c"):
        converge(create(alice, name).pk, "running")
    fake_kube.clear_requests()
    queued = []
    report = drift_sweep(enqueue=queued.append)
    assert (report.endpoints_checked, report.drifted, report.orphans_deleted) == (3, [], [])
    assert report.list_calls == len(ENDPOINT_KINDS) == len(fake_kube.requests)
    assert {r.verb for r in fake_kube.requests} == {"list"} and all(r.namespace is None for r in fake_kube.requests)
    assert fake_kube.writes() == [] and queued == []


def test_drift_is_found_and_orphans_are_removed(alice, cluster, fake_kube, fake_hub):
    a = converge(create(alice, "a").pk, "running")
    b = converge(create(alice, "b").pk, "running")
    kube = __import__("kubernetes").client
    core = kube.CoreV1Api(fake_kube.api_client())
    core.delete_namespaced_service("ep-b", NS)
    ours = owner_labels(settings.INSTALLATION_ID, cluster.pk)
    for name, owner in (("ep-ghost", ours), ("ep-theirs", owner_labels("another-install", cluster.pk)),
                        ("ep-twin", owner_labels(settings.INSTALLATION_ID, cluster.pk + 1))):
        fake_kube.seed("services", {"metadata": {"name": name, "namespace": NS, "labels": {
            "app.kubernetes.io/managed-by": "controlplane", "endpoints.controlplane.dev/id": "999999", **owner}},
            "spec": {"ports": [{"port": 80}]}})
    queued = []
    report = drift_sweep(enqueue=queued.append)
    assert queued == [b.pk] and a.pk not in report.drifted
    # Only this installation's, this registration's orphan goes (item 7 of the isolation review): another
    # installation's objects, or another registration's of the same cluster, are never pruned.
    assert report.orphans_deleted == ["Service/ep-ghost"]
    assert fake_kube.get_object("services", NS, "ep-theirs") and fake_kube.get_object("services", NS, "ep-twin")
    converge(b.pk, "running")
    assert fake_kube.get_object("services", NS, "ep-b") is not None


def test_logs_api(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice, "a").pk, "running")
    api = user_api(alice, role="read")
    r = api.get("/v2/endpoint/alice/a/logs?tail=5")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain"), r.content
    text = r.content.decode()
    pod = text.splitlines()[0].removeprefix("==> ").removesuffix(" <==")
    assert pod.startswith("ep-a-") and len(text.splitlines()) > 1
    only = api.get(f"/v2/endpoint/alice/a/logs?replica={pod}&tail=1").content.decode().splitlines()
    assert only[0] == f"==> {pod} <==" and len(only) == 2
    expect(api.get("/v2/endpoint/alice/a/logs?replica=nope"), 404)
    expect(api.get("/v2/endpoint/alice/a/logs?tail=0"), 400)
    fake_kube.unreachable(True)
    down = api.get("/v2/endpoint/alice/a/logs")
    assert down.status_code == 503 and down.json()["code"] == "cluster_unavailable", down.content
    # Reading logs, even failing to, changes nothing about the endpoint.
    after = Endpoint.objects.get(pk=endpoint.pk)
    assert (after.state, after.generation, after.message) == (endpoint.state, endpoint.generation, endpoint.message)
