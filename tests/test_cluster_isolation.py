"""Tenant isolation on the real API server (the cluster tier): what Kubernetes itself enforces on the
objects we render, one test per item of the isolation review (docs/security.md)."""
import urllib.error

import pytest

from endpoints.models import Endpoint
from tests.clustertier import wait_for
from tests.factories import endpoint_spec
from tests.helpers import expect

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def running(api, name: str = "web") -> None:
    wait_for(lambda: Endpoint.objects.filter(name=name, state="running").exists(), 60,
             lambda: f"{name} running, not {Endpoint.objects.values_list('state', 'message').first()}")


def test_item12_item13_tenant_pods_are_hardened_and_the_namespace_refuses_privileged_pods(api, kube_cluster,
                                                                                         celery):
    celery("worker")
    image = {"custom": {"url": "registry.acme.example/team/server:1", "port": 8080,
                        "credentials": {"username": "bot", "password": "s3cret"}}}
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web", model={"image": image}),
                    format="json"), 202)
    running(api)

    namespace = kube_cluster.get(f"/api/v1/namespaces/{api.ns}")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    pods = kube_cluster.items(f"/api/v1/namespaces/{api.ns}/pods")
    assert pods, "no pods"
    pod = pods[0]["spec"]
    (container,), (fetcher,) = pod["containers"], pod["initContainers"]
    assert container["imagePullPolicy"] == "Always"  # item 12: a credentialed image is never reused from cache
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["cpu"]  # never unbounded
    assert fetcher["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert [v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v] == ["200Gi"]

    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escape", "namespace": api.ns},
                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "securityContext": {"privileged": True}}],
                           "hostPID": True}}
    with pytest.raises(urllib.error.HTTPError) as refused:
        kube_cluster.send("POST", f"/api/v1/namespaces/{api.ns}/pods", privileged)
    assert refused.value.code == 403
    assert "violates PodSecurity" in refused.value.read().decode()


def test_item03_the_tenant_egress_policy_is_accepted_and_selects_every_pod(api, kube_cluster, celery):
    celery("worker")
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    running(api)
    policy = kube_cluster.get(f"/apis/networking.k8s.io/v1/namespaces/{api.ns}/networkpolicies/tenant-egress")
    assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Egress"]
    internet = [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer]
    v4 = next(block for block in internet if block["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "169.254.0.0/16"} <= set(v4["except"])
    # No rule admits a pod or namespace peer other than the cluster DNS.
    peers = [peer for rule in policy["spec"]["egress"] for peer in rule["to"] if "ipBlock" not in peer]
    assert peers == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                      "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]


def as_worker(worker_kubeconfig):
    """The official client with the worker's own credentials (the chart's ServiceAccount)."""
    import kubernetes
    import yaml

    return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config_dict(
        yaml.safe_load(worker_kubeconfig[0])))


def test_item05_the_worker_writes_only_in_namespaces_it_manages(api, kube_cluster, worker_kubeconfig, celery):
    from kubernetes.client.exceptions import ApiException

    celery("worker")
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    running(api)  # the whole create path went through the policy
    core = as_worker(worker_kubeconfig)
    bystander = f"bystander-{api.account}"  # another team's namespace on the same cluster
    kube_cluster.send("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": bystander}})
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "planted"}, "stringData": {"k": "v"}}
    for attempt in (lambda: core.create_namespaced_secret("default", secret),
                    lambda: core.create_namespaced_secret("kube-system", secret),
                    lambda: core.create_namespace({"metadata": {"name": "ie-unlabelled"}}),
                    lambda: core.create_namespace({"metadata": {"name": "victim", "labels": {
                        "app.kubernetes.io/managed-by": "controlplane"}}}),
                    lambda: core.delete_namespace(bystander)):
        with pytest.raises(ApiException) as refused:
            attempt()
        assert refused.value.status == 403, refused.value.body
        assert "writes only in namespaces it manages" in refused.value.body
    assert kube_cluster.get("/api/v1/namespaces/default/secrets/planted") is None
    assert kube_cluster.get(f"/api/v1/namespaces/{bystander}")["status"]["phase"] == "Active"
    # In a namespace it manages, the same write is admitted.
    assert core.create_namespaced_secret(api.ns, secret).metadata.name == "planted"


def test_item13_a_private_endpoints_cidr_rule_excepts_the_clusters_pod_range(api, kube_cluster, celery):
    from scripts.localcluster.cluster import POD_CIDR, SERVICE_CIDR

    # The allowed range holds the cluster's pod and Service ranges, as a VPC range often does.
    celery("worker", PRIVATE_ALLOWED_CIDRS="10.0.0.0/8", TENANT_POD_CIDRS=f"{POD_CIDR},{SERVICE_CIDR}")
    assert api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web", type="private"),
                    format="json").status_code == 202
    running(api)
    (policy,) = [p for p in kube_cluster.items(f"/apis/networking.k8s.io/v1/namespaces/{api.ns}/networkpolicies")
                 if p["metadata"]["name"].startswith("private-")]
    (rule,) = policy["spec"]["ingress"]
    # What the API server stored: the allowed range without the pod range a tenant's pod would come from.
    assert rule["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [POD_CIDR, SERVICE_CIDR]}}]
