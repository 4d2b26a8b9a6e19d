"""The endpoint lifecycle on a real Kubernetes control plane (``tests/clustertier.py``): real API server,
controller manager, scheduler and garbage collector, simulated nodes, the real Celery worker and beat, the
worker acting as the Helm chart's ServiceAccount with exactly the chart's rules.
"""

import pytest

from endpoints.models import Endpoint, EndpointEvent
from tests.clustertier import wait_for
from tests.factories import endpoint_spec
from tests.helpers import expect

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHA = "1" * 40  # what the fake Hub pins every revision to


def state(name: str) -> str | None:
    return Endpoint.objects.filter(name=name).values_list("state", flat=True).first()


def states_seen(name: str) -> list[str]:
    """Every state the endpoint entered, in order (lifecycle events of the services and the reconciler)."""
    return list(EndpointEvent.objects.filter(endpoint__name=name).exclude(to_state="").order_by("id")
                .values_list("to_state", flat=True))


def running(name: str, api, timeout: float = 60) -> dict:
    wait_for(lambda: state(name) == "running", timeout, f"{name} running "
             f"(last: {Endpoint.objects.filter(name=name).values_list('state', 'message').first()})")
    return api.get(f"/v2/endpoint/{api.account}/{name}").json()


def ns_path(namespace: str, resource: str, group: str = "") -> str:
    base = f"/apis/{group}" if group else "/api/v1"
    return f"{base}/namespaces/{namespace}/{resource}"


def test_create_initializes_then_runs_with_real_pods_hpa_service_and_policies(api, kube_cluster, celery):
    mark = kube_cluster.audit_mark()  # the session's cluster: count only this test's requests
    celery("worker")
    celery("beat")
    spec = endpoint_spec("web", compute={"scaling": {"minReplica": 1, "maxReplica": 3}})
    response = api.post(f"/v2/endpoint/{api.account}", spec, format="json")
    assert response.status_code == 202, response.json()
    body = running("web", api)
    assert body["status"]["readyReplica"] == 1, body
    assert states_seen("web")[-2:] == ["initializing", "running"], states_seen("web")

    ns = api.ns
    pods = kube_cluster.items(ns_path(ns, "pods"))
    assert [p["status"]["phase"] for p in pods] == ["Running"], pods
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet", owner
    replicaset = kube_cluster.get(ns_path(ns, "replicasets", "apps/v1") + "/" + owner["name"])
    assert replicaset["metadata"]["ownerReferences"][0]["name"] == "ep-web"
    template = pods[0]["spec"]
    env = {e["name"]: e.get("value") for e in template["containers"][0]["env"]}
    assert env["HF_REVISION"] == SHA
    assert SHA in template["initContainers"][0]["command"], template["initContainers"][0]
    assert template["nodeName"].startswith("sim-cpu-"), template["nodeName"]

    hpa = kube_cluster.get(ns_path(ns, "horizontalpodautoscalers", "autoscaling/v2") + "/ep-web")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu", hpa["spec"]["metrics"]
    service = kube_cluster.get(ns_path(ns, "services") + "/ep-web")
    assert service["spec"]["clusterIP"].startswith("10.96."), service["spec"]
    policies = {p["metadata"]["name"] for p in kube_cluster.items(ns_path(ns, "networkpolicies", "networking.k8s.io/v1"))}
    assert {"default-deny-ingress", "gateway-ep-web"} <= policies, policies
    forbidden = [e for e in kube_cluster.worker_requests(mark) if e.get("responseStatus", {}).get("code") == 403]
    assert forbidden == [], [f"{e['verb']} {e['requestURI']}" for e in forbidden]


def replicasets(probe, ns: str, name="ep-web") -> list[dict]:
    return [r for r in probe.items(ns_path(ns, "replicasets", "apps/v1"))
            if r["metadata"]["ownerReferences"][0]["name"] == name]


def test_update_rolls_out_and_a_bad_image_is_update_failed_while_the_old_version_serves(api, kube_cluster, celery):
    celery("worker")
    celery("beat")
    image = {"custom": {"url": "registry.example.com/team/server:1", "healthRoute": "/health", "port": 80}}
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web", model={"image": image}),
                    format="json"), 202)
    running("web", api)

    patch = {"model": {"image": {"custom": {"url": "registry.example.com/team/server:2"}}, "revision": "main"},
             "compute": {"scaling": {"minReplica": 2, "maxReplica": 2}}}
    response = api.put(f"/v2/endpoint/{api.account}/web", patch, format="json")
    assert response.status_code == 200, response.json()
    body = running("web", api)
    assert states_seen("web")[-2:] == ["updating", "running"], states_seen("web")
    assert body["status"]["readyReplica"] == 2, body
    pods = kube_cluster.items(ns_path(api.ns, "pods"))
    assert sorted(p["spec"]["containers"][0]["image"] for p in pods if not p["metadata"].get("deletionTimestamp")) \
        == ["registry.example.com/team/server:2"] * 2
    assert len(replicasets(kube_cluster, api.ns)) == 2  # the rollout went through a second ReplicaSet

    bad = {"model": {"image": {"custom": {"url": "simulated.invalid/pull-error/server:3"}}}}
    expect(api.put(f"/v2/endpoint/{api.account}/web", bad, format="json"), 200)
    wait_for(lambda: state("web") == "updateFailed", 60, "updateFailed")
    endpoint = Endpoint.objects.get(name="web")
    assert "ErrImagePull" in endpoint.message and "previous version keeps serving" in endpoint.message, endpoint.message
    serving = [p for p in kube_cluster.items(ns_path(api.ns, "pods"))
               if p["spec"]["containers"][0]["image"].endswith(":2") and p["status"]["phase"] == "Running"]
    assert len(serving) == 2, "the old pods keep serving during a failed update"


def test_a_crash_looping_image_fails_with_the_reason_the_cluster_gives(api, kube_cluster, celery):
    celery("worker")
    image = {"custom": {"url": "simulated.invalid/crash-loop/server:1", "healthRoute": "/health", "port": 80}}
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web", model={"image": image}),
                    format="json"), 202)
    wait_for(lambda: state("web") == "failed", 60,
             lambda: f"failed, not {Endpoint.objects.values_list('state', 'message').first()}")
    message = Endpoint.objects.get(name="web").message
    assert "CrashLoopBackOff" in message and "back-off" in message, message


def test_pause_resume_scale_to_zero_and_delete_down_to_the_namespace(api, kube_cluster, celery):
    celery("worker")
    celery("beat")
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    running("web", api)
    hpa_path = ns_path(api.ns, "horizontalpodautoscalers", "autoscaling/v2") + "/ep-web"
    deployment_path = ns_path(api.ns, "deployments", "apps/v1") + "/ep-web"

    expect(api.post(f"/v2/endpoint/{api.account}/web/pause"), 200)
    wait_for(lambda: kube_cluster.get(hpa_path) is None, 30, "the HPA removed")
    wait_for(lambda: kube_cluster.items(ns_path(api.ns, "pods")) == [], 30, "pods gone")
    assert kube_cluster.get(deployment_path)["spec"]["replicas"] == 0
    assert state("web") == "paused"

    expect(api.post(f"/v2/endpoint/{api.account}/web/resume"), 200)
    running("web", api)
    assert kube_cluster.get(hpa_path) is not None

    expect(api.post(f"/v2/endpoint/{api.account}/web/scale-to-zero"), 200)
    wait_for(lambda: kube_cluster.items(ns_path(api.ns, "pods")) == [], 30, "pods gone")
    assert state("web") == "scaledToZero" and kube_cluster.get(hpa_path) is None

    expect(api.delete(f"/v2/endpoint/{api.account}/web"), 200)
    wait_for(lambda: not Endpoint.objects.filter(name="web").exists(), 30, "the row gone")
    # The garbage collector removes the ReplicaSets; the account's last endpoint takes the namespace with it.
    wait_for(lambda: kube_cluster.get(f"/api/v1/namespaces/{api.ns}") is None, 60, "the namespace finalised")


def test_the_mirrored_resource_quota_refuses_a_pod_and_the_endpoint_says_why(api, kube_cluster, celery):
    celery("worker")
    celery("beat")
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    running("web", api)
    quota = kube_cluster.get(ns_path(api.ns, "resourcequotas") + "/endpoints-quota")
    hard = quota["spec"]["hard"]["requests.cpu"]
    # Something else in the namespace takes what is left of the quota: the next pod cannot be admitted.
    squatter = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "squatter", "namespace": api.ns},
                "spec": {"nodeName": "sim-cpu-0", "containers": [{"name": "c", "image": "busybox", "resources": {
                    "requests": {"cpu": str(float(hard) - 1.8)}}}]}}
    kube_cluster.send("POST", ns_path(api.ns, "pods"), squatter)
    patch = {"model": {"env": {"ROLL": "1"}}}  # a new template: the surge pod needs more CPU than is left
    expect(api.put(f"/v2/endpoint/{api.account}/web", patch, format="json"), 200)
    wait_for(lambda: "exceeded quota" in (Endpoint.objects.get(name="web").message or ""), 60,
             "the quota refusal reported")
    endpoint = Endpoint.objects.get(name="web")
    assert endpoint.state == "updateFailed", (endpoint.state, endpoint.message)
    assert "endpoints-quota" in endpoint.message, endpoint.message


def test_the_cluster_probe_reads_version_and_node_capacity_with_the_charts_rules(kube_cluster, local_cluster):
    """The worker's identity (exactly the chart's ClusterRole) may list nodes; the probe records what the
    simulated nodes offer, and a probe of an unreachable cluster keeps those figures and says why."""
    from django.utils import timezone

    from deployments.models import Cluster
    from deployments.probe import cluster_probe

    cluster = Cluster.objects.get(name="local")
    before = timezone.now()
    assert cluster_probe(cluster) is True
    cluster.refresh_from_db()
    pools = local_cluster.pools
    assert cluster.kubernetes_version == local_cluster.version()
    assert cluster.contacted_at >= before and cluster.contact_error == ""
    assert cluster.capacity == {
        "nodes": sum(p.count for p in pools), "readyNodes": sum(p.count for p in pools),
        "cpu": float(sum(p.count * int(p.cpu) for p in pools)),
        "memoryGiB": float(sum(p.count * int(p.memory.removesuffix("Gi")) for p in pools)),
        "gpu": sum(p.count * p.gpus for p in pools), "neuron": 0}
