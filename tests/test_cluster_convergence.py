"""Convergence on the real API server, counted by the API server itself (its audit log of the worker's
ServiceAccount): a converged endpoint costs no writes, hand edits and deletes are repaired by the drift
sweep, the HPA's replica count is never fought over, and API server / etcd outages are ridden out.
"""
import time

import pytest

from endpoints.models import Endpoint
from tests.clustertier import wait_for
from tests.factories import endpoint_spec
from tests.helpers import expect

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
MERGE = "application/merge-patch+json"


def deployment_path(api) -> str:
    return f"/apis/apps/v1/namespaces/{api.ns}/deployments/ep-web"


def endpoint() -> Endpoint:
    return Endpoint.objects.get(name="web")


def settled_running(api, kube_cluster) -> None:
    """Running, and the worker has stopped requeueing passes (no request for a second)."""
    wait_for(lambda: Endpoint.objects.filter(name="web", state="running").exists(), 60,
             lambda: f"running, not {Endpoint.objects.values_list('state', 'message').first()}")

    def quiet() -> bool:
        mark = kube_cluster.audit_mark()
        time.sleep(2.5)
        return not [e for e in kube_cluster.worker_requests(mark) if f"/namespaces/{api.ns}/" in e["requestURI"]]
    wait_for(quiet, 30, "the worker to stop requeueing")


def drift_sweeps(kube_cluster, since: int) -> int:
    """Drift sweeps started since ``since``: each lists Deployments across all namespaces by label."""
    return sum(1 for e in kube_cluster.worker_requests(since)
               if e["verb"] == "list" and e["requestURI"].startswith("/apis/apps/v1/deployments?"))


def test_converged_endpoint_costs_no_writes_over_three_sweeps_and_the_hpa_keeps_its_replicas(
        api, kube_cluster, celery):
    celery("worker")
    celery("beat")
    spec = endpoint_spec("web", compute={"scaling": {"minReplica": 1, "maxReplica": 3}})
    expect(api.post(f"/v2/endpoint/{api.account}", spec, format="json"), 202)
    settled_running(api, kube_cluster)
    # Scale as the HPA would (the scale subresource): that number is the HPA's, never written back.
    kube_cluster.send("PATCH", deployment_path(api) + "/scale", {"spec": {"replicas": 2}}, MERGE)
    mark = kube_cluster.audit_mark()
    wait_for(lambda: drift_sweeps(kube_cluster, mark) >= 3, 30, "three drift sweeps")
    assert kube_cluster.worker_writes(mark) == []
    assert kube_cluster.get(deployment_path(api))["spec"]["replicas"] == 2
    reads = [e for e in kube_cluster.worker_requests(mark) if e["verb"] in ("get", "list")]
    assert reads, "the sweeps did read the cluster"


def test_drift_sweep_repairs_a_deleted_and_a_hand_edited_deployment(api, kube_cluster, celery):
    celery("worker")
    celery("beat")
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    settled_running(api, kube_cluster)
    original = kube_cluster.get(deployment_path(api))
    image = original["spec"]["template"]["spec"]["containers"][0]["image"]

    # A hand edit that keeps our annotations: the rendered fields differ, so it is put back.
    tampered = [{**original["spec"]["template"]["spec"]["containers"][0], "image": "attacker.example/miner:1"}]
    kube_cluster.send("PATCH", deployment_path(api), {"spec": {"template": {"spec": {"containers": tampered}}}}, MERGE)
    wait_for(lambda: kube_cluster.get(deployment_path(api))["spec"]["template"]["spec"]["containers"][0]["image"]
             == image, 30, "the edit reverted")

    kube_cluster.send("DELETE", deployment_path(api))
    wait_for(lambda: (kube_cluster.get(deployment_path(api)) or {}).get("metadata", {}).get("uid")
             not in (None, original["metadata"]["uid"]), 30, "the Deployment recreated")
    settled_running(api, kube_cluster)
    names = [d["metadata"]["name"] for d in kube_cluster.items(f"/apis/apps/v1/namespaces/{api.ns}/deployments")]
    assert names == ["ep-web"]


def test_api_server_restart_and_etcd_outage_keep_the_last_state_and_converge_after(
        api, kube_cluster, local_cluster, celery):
    celery("worker")
    celery("beat")
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    settled_running(api, kube_cluster)

    local_cluster.stop("etcd")
    patch = {"compute": {"scaling": {"minReplica": 2, "maxReplica": 2}}}
    expect(api.put(f"/v2/endpoint/{api.account}/web", patch, format="json"), 200)
    wait_for(lambda: "Kubernetes API problem" in endpoint().message, 60,
             lambda: f"the outage reported, not {endpoint().state}: {endpoint().message}")
    assert endpoint().state == "updating"  # the last known state is kept, with the reason in the message

    local_cluster.stop("kube-apiserver")
    time.sleep(2)
    assert endpoint().state == "updating"
    local_cluster.up(quiet=True)  # etcd and the API server come back
    wait_for(lambda: Endpoint.objects.filter(name="web", state="running", ready_replica=2).exists(), 90,
             lambda: f"running with 2 replicas, not {endpoint().state} {endpoint().ready_replica}: "
                     f"{endpoint().message}; {kube_cluster.get(deployment_path(api)).get('status')}; "
                     f"{local_cluster.components()}")
    deployments = kube_cluster.items(f"/apis/apps/v1/namespaces/{api.ns}/deployments")
    assert [d["metadata"]["name"] for d in deployments] == ["ep-web"]
    pods = [p for p in kube_cluster.items(f"/api/v1/namespaces/{api.ns}/pods")
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
