"""Tests for tests/fakekube, driven only through the official kubernetes client over HTTP.

No database is used. Timing knobs are turned down (pod_ready_seconds=0.1) to keep the
module fast; waits poll the API through the client until a condition holds.
"""

from __future__ import annotations

import json

import kubernetes
import kubernetes_validate
import pytest
import urllib3
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from tests.fakekube import UNSCHEDULABLE_MESSAGE, FakeKube
from tests.fakekube.fixtures import fake_kube  # noqa: F401 - fixture used by `kube`

NS = "ml"


@pytest.fixture
def kube(fake_kube):  # noqa: F811 - wraps the shared fixture with faster pods
    fake_kube.pod_ready_seconds = 0.1
    apis = Clients(fake_kube.api_client())
    apis.core.create_namespace({"metadata": {"name": NS}})
    fake_kube.clear_requests()
    return fake_kube


class Clients:
    def __init__(self, api_client):
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)


@pytest.fixture
def apis(kube):
    return Clients(kube.api_client())


def deployment(name="llm", image="vllm:0.6", replicas=2, **spec_extra):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {**labels, "tier": "inference"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "server", "image": image,
                                                       "ports": [{"containerPort": 8000}]}]}},
                 **spec_extra},
    }


def error_body(exc: ApiException) -> dict:
    return json.loads(exc.body)


def wait_ready(kube, apis, name, replicas):
    return kube.wait_until(
        lambda: (d := apis.apps.read_namespaced_deployment(name, NS)).status.ready_replicas
        == replicas and d, timeout=5, message=f"{name} ready")


# ---- wiring, discovery, kubeconfig ----

def test_kubeconfig_and_discovery(kube, tmp_path):
    path = kube.write_kubeconfig(tmp_path / "kubeconfig", context="fake")
    cfg = client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(path), client_configuration=cfg)
    assert cfg.host == kube.url
    api_client = client.ApiClient(cfg)
    assert client.VersionApi(api_client).get_code().minor == "33"
    names = {n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items}
    assert {"default", "kube-system", NS} <= names
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {"apps", "autoscaling", "networking.k8s.io"} <= groups
    resources = client.AppsV1Api(api_client).get_api_resources().resources
    assert {"deployments", "deployments/status", "replicasets"} <= {r.name for r in resources}


# ---- CRUD, selectors, errors ----

def test_create_get_list_with_selectors(kube, apis):
    for name, labels in [("a", {"app": "x", "env": "prod"}), ("b", {"app": "y", "env": "dev"}),
                         ("c", {"app": "z"})]:
        created = apis.core.create_namespaced_config_map(
            NS, {"metadata": {"name": name, "labels": labels}, "data": {"k": name}})
        assert created.metadata.uid and int(created.metadata.resource_version) > 0
        assert created.metadata.creation_timestamp is not None
    assert apis.core.read_namespaced_config_map("b", NS).data == {"k": "b"}

    def names(**kw):
        return sorted(c.metadata.name for c in apis.core.list_namespaced_config_map(NS, **kw).items)

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app!=x") == ["b", "c"]
    assert names(label_selector="app in (x,z)") == ["a", "c"]
    assert names(label_selector="app notin (x)") == ["b", "c"]
    assert names(label_selector="env") == ["a", "b"]
    assert names(label_selector="!env") == ["c"]
    assert names(label_selector="app in (x,y),env!=dev") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    listing = apis.core.list_namespaced_config_map(NS, limit=2)
    assert listing.kind == "ConfigMapList" and listing.api_version == "v1"
    assert int(listing.metadata.resource_version) >= 3
    assert len(listing.items) == 2 and listing.metadata.remaining_item_count == 1
    rest = apis.core.list_namespaced_config_map(NS, _continue=listing.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["c"]

    with pytest.raises(ApiException) as exc:
        apis.core.create_namespaced_config_map(NS, {"metadata": {"name": "a"}})
    assert exc.value.status == 409 and error_body(exc.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as exc:
        apis.core.read_namespaced_config_map("nope", NS)
    body = error_body(exc.value)
    assert exc.value.status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
    with pytest.raises(ApiException) as exc:
        apis.core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "a"}})
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        apis.core.list_namespaced_config_map(NS, label_selector="app in (x")
    assert exc.value.status == 400


def test_cluster_wide_list_and_server_defaults(kube, apis):
    apis.core.create_namespace({"metadata": {"name": "other"}})
    for ns in (NS, "other"):
        apis.apps.create_namespaced_deployment(ns, deployment("m", replicas=0))
    apis.apps.create_namespaced_deployment(NS, deployment("unmanaged", replicas=0))
    found = apis.apps.list_deployment_for_all_namespaces(label_selector="app=m")
    assert sorted(d.metadata.namespace for d in found.items) == [NS, "other"]

    svc = apis.core.create_namespaced_service(NS, {
        "metadata": {"name": "llm"}, "spec": {"selector": {"app": "llm"},
                                              "ports": [{"port": 80, "targetPort": 8000}]}})
    assert svc.spec.type == "ClusterIP" and svc.spec.cluster_ip
    assert svc.spec.ports[0].protocol == "TCP"
    secret = apis.core.create_namespaced_secret(NS, {"metadata": {"name": "tok"},
                                                     "stringData": {"token": "abc"}})
    assert secret.data == {"token": "YWJj"} and secret.string_data is None
    assert secret.type == "Opaque"
    dep = apis.apps.read_namespaced_deployment("m", NS)
    assert dep.spec.strategy.type == "RollingUpdate" and dep.spec.progress_deadline_seconds == 600


def _progress_reason(dep: dict) -> str | None:
    conditions = (dep.get("status") or {}).get("conditions") or []
    return next((c.get("reason") for c in conditions if c["type"] == "Progressing"), None)


def test_replace_conflict_and_generation(kube, apis):
    created = apis.apps.create_namespaced_deployment(NS, deployment(replicas=0))
    assert created.metadata.generation == 1
    # The simulated controller writes status for a few passes after a create; each write bumps
    # resourceVersion, so read only once it has settled, or "fresh" could already be stale.
    kube.wait_until(lambda: _progress_reason(kube.get_object("deployments", NS, "llm"))
                    == "NewReplicaSetAvailable", message="the deployment's status to settle")
    stale = apis.apps.read_namespaced_deployment("llm", NS)
    fresh = apis.apps.read_namespaced_deployment("llm", NS)
    fresh.spec.replicas = 3  # a spec change: generation bumps
    updated = apis.apps.replace_namespaced_deployment("llm", NS, fresh)
    assert updated.metadata.generation == 2 and updated.spec.replicas == 3

    stale.spec.replicas = 5
    with pytest.raises(ApiException) as exc:
        apis.apps.replace_namespaced_deployment("llm", NS, stale)
    assert exc.value.status == 409 and error_body(exc.value)["reason"] == "Conflict"
    assert kube.get_object("deployments", NS, "llm")["spec"]["replicas"] == 3

    # A metadata-only change keeps the generation; no resourceVersion means unconditional.
    body = deployment(replicas=3)
    body["metadata"]["labels"]["extra"] = "yes"
    again = apis.apps.replace_namespaced_deployment("llm", NS, body)
    assert again.metadata.generation == 2 and again.metadata.labels["extra"] == "yes"
    assert again.metadata.uid == created.metadata.uid

    with pytest.raises(ApiException) as exc:
        apis.apps.replace_namespaced_deployment("ghost", NS, deployment("ghost"))
    assert exc.value.status == 404


def test_patch_with_every_content_type_the_client_uses(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment(replicas=0))
    kube.clear_requests()

    # A dict body: the client picks json-patch+json, then rest.py rewrites it to strategic.
    apis.apps.patch_namespaced_deployment("llm", NS, {"metadata": {"labels": {"s": "1"}}})
    # A list body stays a JSON patch (RFC 6902).
    apis.apps.patch_namespaced_deployment("llm", NS, [
        {"op": "replace", "path": "/spec/replicas", "value": 1},
        {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}}])
    # Explicit merge patch; null deletes.
    apis.apps.patch_namespaced_deployment("llm", NS, {"metadata": {"labels": {"s": None}}},
                                          _content_type="application/merge-patch+json")
    # Server-side apply: the generated method takes dict bodies and sends them as JSON.
    apis.apps.patch_namespaced_deployment(
        "llm", NS, {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "llm", "labels": {"applied": "yes"}},
                    "spec": {"replicas": 2}},
        field_manager="reconciler", _content_type="application/apply-patch+yaml")

    types = [r.content_type for r in kube.writes()]
    assert types == ["application/strategic-merge-patch+json", "application/json-patch+json",
                     "application/merge-patch+json", "application/apply-patch+yaml"]
    assert kube.writes()[3].query["fieldManager"] == "reconciler"
    dep = kube.get_object("deployments", NS, "llm")
    assert dep["spec"]["replicas"] == 2
    assert dep["metadata"]["annotations"]["a/b"] == "c"
    assert "s" not in dep["metadata"]["labels"] and dep["metadata"]["labels"]["applied"] == "yes"
    assert dep["metadata"]["generation"] == 3  # two replica changes; label patches do not count

    # Apply creates a missing object; a YAML text body (what kubectl sends) works too.
    response = apis.apps.api_client.call_api(
        "PATCH", f"{kube.url}/apis/apps/v1/namespaces/{NS}/deployments/fresh"
                 "?fieldManager=reconciler",
        header_params={"Content-Type": "application/apply-patch+yaml"},
        body="apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: fresh\nspec:\n"
             "  replicas: 0\n  selector: {matchLabels: {app: fresh}}\n  template:\n"
             "    metadata: {labels: {app: fresh}}\n"
             "    spec: {containers: [{name: c, image: 'x:1'}]}\n")
    assert response.status == 201 and kube.writes()[-1].body["metadata"]["name"] == "fresh"
    assert kube.get_object("deployments", NS, "fresh")["spec"]["template"]["spec"][
        "containers"][0]["imagePullPolicy"] == "IfNotPresent"
    with pytest.raises(ApiException) as exc:  # apply needs a field manager
        apis.apps.patch_namespaced_deployment("fresh", NS, deployment("fresh"),
                                              _content_type="application/apply-patch+yaml")
    assert exc.value.status == 400
    with pytest.raises(ApiException) as exc:  # failing JSON-patch test op
        apis.apps.patch_namespaced_deployment(
            "llm", NS, [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:  # resourceVersion in a patch is a precondition
        apis.apps.patch_namespaced_deployment(
            "llm", NS, {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 4}})
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:
        apis.core.patch_namespaced_config_map("missing", NS, {"data": {"a": "b"}})
    assert exc.value.status == 404


def test_invalid_objects_get_422_and_are_not_stored(kube, apis):
    # The typed client's pydantic models refuse unknown fields and wrong types before
    # sending, so such bodies go through the official dynamic client (plain dicts).
    deployments = dynamic.DynamicClient(kube.api_client()).resources.get(
        api_version="apps/v1", kind="Deployment")
    unknown_field = deployment("bad1")
    unknown_field["spec"]["replicaz"] = 2
    wrong_type = deployment("bad2")
    wrong_type["spec"]["replicas"] = "two"
    bad_selector = deployment("bad3")
    bad_selector["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    for body, needle in ((unknown_field, "replicaz"), (wrong_type, "'two' is not of type"),
                         (bad_selector, "selector"), (deployment("Bad_Name"), "RFC 1123")):
        with pytest.raises(ApiException) as exc:
            deployments.create(body=body, namespace=NS)
        status = error_body(exc.value)
        assert exc.value.status == 422 and status["reason"] == "Invalid", body
        assert status["status"] == "Failure" and status["code"] == 422
        assert needle in status["message"]
    assert _raises(apis.apps.create_namespaced_deployment, NS, deployment("Bad_Name")).status == 422
    assert kube.objects("deployments", NS) == []

    apis.apps.create_namespaced_deployment(NS, deployment(replicas=0))
    with pytest.raises(ApiException) as exc:  # body name disagrees with the URL
        apis.apps.replace_namespaced_deployment("llm", NS, deployment("other"))
    assert exc.value.status == 422
    for patch in ({"spec": {"replicas": "many"}}, {"spec": {"replicaz": 1}}):
        with pytest.raises(ApiException) as exc:  # a patch producing an invalid object
            apis.apps.patch_namespaced_deployment("llm", NS, patch)
        assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:  # selectors are immutable
        apis.apps.patch_namespaced_deployment(
            "llm", NS, {"spec": {"selector": {"matchLabels": {"app": "llm", "v": "2"}},
                                 "template": {"metadata": {"labels": {"app": "llm", "v": "2"}}}}})
    assert exc.value.status == 422 and "immutable" in error_body(exc.value)["message"]
    assert kube.get_object("deployments", NS, "llm")["spec"]["replicas"] == 0


def _raises(fn, *args, **kwargs):
    with pytest.raises(ApiException) as exc:
        fn(*args, **kwargs)
    return exc.value


# ---- fault injection ----

def test_fail_next_returns_status_and_retry_after(kube, apis):
    kube.fail_next(1, status=429, retry_after=3)
    exc = _raises(apis.core.create_namespaced_config_map, NS, {"metadata": {"name": "x"}})
    assert exc.status == 429 and exc.headers["Retry-After"] == "3"
    assert error_body(exc)["reason"] == "TooManyRequests"
    assert error_body(exc)["details"]["retryAfterSeconds"] == 3
    apis.core.create_namespaced_config_map(NS, {"metadata": {"name": "x"}})  # only one scripted

    # urllib3 itself retries idempotent requests answered 429/503 with Retry-After.
    kube.clear_requests()
    kube.fail_next(1, status=429, retry_after=0)
    assert len(apis.core.list_namespaced_config_map(NS).items) == 1
    assert [r.status for r in kube.requests] == [429, 200]
    kube.clear_requests()

    kube.fail_next(1, status=503, methods=["POST"])
    apis.core.list_namespaced_config_map(NS)  # GET does not match the filter
    exc = _raises(apis.core.create_namespaced_config_map, NS, {"metadata": {"name": "y"}})
    assert exc.status == 503 and error_body(exc)["reason"] == "ServiceUnavailable"
    assert kube.get_object("configmaps", NS, "y") is None  # the failed write was not applied
    assert [r.status for r in kube.writes()] == [503]


def test_random_failures_never_apply_failed_writes(kube, apis):
    kube.set_failure_rate(0.5, seed=7)
    statuses = []
    for i in range(30):
        try:
            apis.core.create_namespaced_config_map(NS, {"metadata": {"name": f"cm{i}"}})
            statuses.append(201)
        except ApiException as e:
            assert e.status in (500, 503, 429, 409)
            statuses.append(e.status)
    kube.set_failure_rate(0)
    stored = {c["metadata"]["name"] for c in kube.objects("configmaps", NS)}
    assert stored == {f"cm{i}" for i, s in enumerate(statuses) if s == 201}
    assert 0 < len(stored) < 30


def test_hang_next_makes_client_time_out(kube, apis):
    kube.hang_next(1, 0.5)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        apis.core.create_namespaced_config_map(NS, {"metadata": {"name": "slow"}},
                                               _request_timeout=0.15)
    # Like a slow real apiserver, the timed-out write still lands afterwards.
    kube.wait_until(lambda: kube.get_object("configmaps", NS, "slow"), timeout=3)
    # urllib3 retries idempotent reads on timeout: only a hang longer than all tries fails.
    kube.hang_next(4, 0.5)
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        apis.core.read_namespaced_config_map("slow", NS, _request_timeout=0.15)
    assert [r.verb for r in kube.requests[-4:]] == ["get"] * 4  # 1 try + 3 urllib3 retries


def test_unreachable_drops_connections(kube, apis):
    kube.unreachable(True)
    with pytest.raises(urllib3.exceptions.HTTPError):
        apis.core.list_namespaced_config_map(NS)
    kube.unreachable(False)
    assert apis.core.list_namespaced_config_map(NS).items == []


# ---- controllers ----

def test_deployment_becomes_ready_and_controller_writes_are_not_logged(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment(replicas=2))
    dep = wait_ready(kube, apis, "llm", 2)
    st = dep.status
    assert (st.replicas, st.updated_replicas, st.available_replicas) == (2, 2, 2)
    assert st.unavailable_replicas is None and st.observed_generation == 1
    conds = {c.type: c for c in st.conditions}
    assert conds["Available"].status == "True"
    assert conds["Progressing"].reason == "NewReplicaSetAvailable"
    pods = apis.core.list_namespaced_pod(NS, label_selector="app=llm").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running" and pod.status.container_statuses[0].ready
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    rs = apis.apps.list_namespaced_replica_set(NS).items
    assert len(rs) == 1 and rs[0].status.ready_replicas == 2
    reasons = {e.reason for e in apis.core.list_namespaced_event(NS).items}
    assert {"Scheduled", "Started", "ScalingReplicaSet"} <= reasons
    assert [(r.verb, r.kind) for r in kube.writes()] == [("create", "deployments")]
    # Once settled, the controllers stop writing: no resourceVersion churn, no spurious 409s.
    rv = apis.core.list_namespaced_pod(NS).metadata.resource_version
    kube.tick()
    kube.tick()
    assert apis.core.list_namespaced_pod(NS).metadata.resource_version == rv

    apis.apps.patch_namespaced_deployment("llm", NS, {"spec": {"replicas": 0}})
    kube.wait_until(lambda: not apis.core.list_namespaced_pod(NS).items, message="scale to 0")


def test_crashloop_image(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment(image="vllm:crashloop", replicas=1))

    def crashing():
        pods = apis.core.list_namespaced_pod(NS).items
        cs = pods and pods[0].status.container_statuses
        return cs and cs[0].restart_count >= 2 and pods[0]

    pod = kube.wait_until(crashing, timeout=5, message="restarts")
    cs = pod.status.container_statuses[0]
    assert pod.status.phase == "Running" and not cs.ready
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert cs.last_state.terminated.exit_code == 1
    dep = apis.apps.read_namespaced_deployment("llm", NS)
    assert dep.status.ready_replicas is None and dep.status.unavailable_replicas == 1
    events = apis.core.list_namespaced_event(NS, field_selector="reason=BackOff").items
    assert events and events[0].type == "Warning" and events[0].count >= 2
    log = apis.core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert "Traceback (most recent call last):" in log


def test_image_pull_failure_and_unschedulable_gpu(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment("pull", image="reg/x:imagepullfail",
                                                          replicas=1))
    big = deployment("big", replicas=1)
    big["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": "16"}}
    apis.apps.create_namespaced_deployment(NS, big)

    def waiting_reason():
        pods = apis.core.list_namespaced_pod(NS, label_selector="app=pull").items
        cs = pods and pods[0].status.container_statuses
        return cs and cs[0].state.waiting and cs[0].state.waiting.reason in (
            "ErrImagePull", "ImagePullBackOff") and pods[0]

    pod = kube.wait_until(waiting_reason, message="image pull failure")
    assert pod.status.phase == "Pending"
    big_pod = apis.core.list_namespaced_pod(NS, label_selector="app=big").items[0]
    assert big_pod.status.phase == "Pending"
    sched = {c.type: c for c in big_pod.status.conditions}["PodScheduled"]
    assert (sched.status, sched.reason) == ("False", "Unschedulable")
    kube.wait_until(lambda: apis.core.list_namespaced_event(
        NS, field_selector="reason=Failed").items, message="Failed event")
    failed = apis.core.list_namespaced_event(NS, field_selector="reason=FailedScheduling").items
    assert failed[0].message == UNSCHEDULABLE_MESSAGE
    assert failed[0].involved_object.name == big_pod.metadata.name
    kube.gpu_capacity = 16  # capacity appears: the pod schedules and starts
    wait_ready(kube, apis, "big", 1)


def test_rolling_update_to_crashloop_keeps_old_pods_serving(kube, apis):
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    apis.apps.create_namespaced_deployment(NS, deployment(replicas=2, strategy=strategy,
                                                          progressDeadlineSeconds=20))
    wait_ready(kube, apis, "llm", 2)
    old_pods = {p.metadata.name for p in apis.core.list_namespaced_pod(NS).items}
    apis.apps.patch_namespaced_deployment("llm", NS, {"spec": {"template": {"spec": {
        "containers": [{"name": "server", "image": "vllm:crashloop"}]}}}})

    def deadline_exceeded():
        d = apis.apps.read_namespaced_deployment("llm", NS)
        cond = {c.type: c for c in d.status.conditions}["Progressing"]
        return cond.reason == "ProgressDeadlineExceeded" and d

    dep = kube.wait_until(deadline_exceeded, timeout=5, message="ProgressDeadlineExceeded")
    progressing = {c.type: c for c in dep.status.conditions}["Progressing"]
    assert progressing.status == "False"
    assert dep.status.ready_replicas == 2 and dep.status.updated_replicas == 1
    assert dep.status.replicas == 3  # maxSurge 1: one new pod next to the two old ones
    assert {c.type: c.status for c in dep.status.conditions}["Available"] == "True"
    running = {p.metadata.name for p in apis.core.list_namespaced_pod(NS).items
               if {c.type: c.status for c in p.status.conditions}.get("Ready") == "True"}
    assert running == old_pods

    # Fixing the image completes the rollout and retires the old pods.
    apis.apps.patch_namespaced_deployment("llm", NS, {"spec": {"template": {"spec": {
        "containers": [{"name": "server", "image": "vllm:0.7"}]}}}})
    kube.wait_until(lambda: (d := apis.apps.read_namespaced_deployment("llm", NS)).status
                    .updated_replicas == 2 and d.status.replicas == 2
                    and d.status.ready_replicas == 2, timeout=5, message="rollout done")
    assert not old_pods & {p.metadata.name for p in apis.core.list_namespaced_pod(NS).items}


def test_set_pod_ready_forces_crashlooping_pods_ready(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment(image="x:crashloop", replicas=2))
    kube.wait_until(lambda: len(apis.core.list_namespaced_pod(NS).items) == 2)
    kube.set_pod_ready(NS, "llm")
    assert apis.apps.read_namespaced_deployment("llm", NS).status.ready_replicas == 2


def test_hpa_clamps_replicas(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment(replicas=1))
    apis.autoscaling.create_namespaced_horizontal_pod_autoscaler(NS, {
        "metadata": {"name": "llm"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
                 "minReplicas": 2, "maxReplicas": 3}})
    kube.wait_until(lambda: apis.apps.read_namespaced_deployment("llm", NS).spec.replicas == 2,
                    message="clamp up")
    apis.apps.patch_namespaced_deployment("llm", NS, {"spec": {"replicas": 10}})
    kube.wait_until(lambda: apis.apps.read_namespaced_deployment("llm", NS).spec.replicas == 3,
                    message="clamp down")
    hpa = kube.wait_until(lambda: (h := apis.autoscaling.read_namespaced_horizontal_pod_autoscaler(
        "llm", NS)).status.current_replicas == 3 and h, message="hpa status")
    assert hpa.status.desired_replicas == 3 and hpa.status.last_scale_time is not None
    # Only the client's own writes are logged, not the HPA's.
    assert [(r.verb, r.kind) for r in kube.writes()] == [
        ("create", "deployments"), ("create", "horizontalpodautoscalers"),
        ("patch", "deployments")]
    assert apis.apps.read_namespaced_deployment("llm", NS).metadata.generation == 4


def test_scale_subresource(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment(replicas=1))
    scale = apis.apps.read_namespaced_deployment_scale("llm", NS)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=llm"
    apis.apps.patch_namespaced_deployment_scale("llm", NS, {"spec": {"replicas": 3}})
    assert kube.get_object("deployments", NS, "llm")["spec"]["replicas"] == 3
    scale.spec.replicas = 0  # stale resourceVersion from before the patch
    assert _raises(apis.apps.replace_namespaced_deployment_scale, "llm", NS, scale).status == 409
    kube.wait_until(lambda: len(kube.objects("pods", NS)) == 3, message="scaled up")


def test_delete_garbage_collects_and_orphan_keeps_dependents(kube, apis):
    apis.apps.create_namespaced_deployment(NS, deployment(replicas=2))
    kube.wait_until(lambda: len(kube.objects("pods", NS)) == 2)
    status = apis.apps.delete_namespaced_deployment("llm", NS)
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert kube.objects("pods", NS) == [] and kube.objects("replicasets", NS) == []
    assert _raises(apis.apps.read_namespaced_deployment, "llm", NS).status == 404
    assert _raises(apis.apps.delete_namespaced_deployment, "llm", NS).status == 404

    apis.apps.create_namespaced_deployment(NS, deployment("keep", replicas=1))
    kube.wait_until(lambda: kube.objects("pods", NS))
    apis.apps.delete_namespaced_deployment("keep", NS, propagation_policy="Orphan")
    rs = kube.objects("replicasets", NS)
    assert len(rs) == 1 and "ownerReferences" not in rs[0]["metadata"]
    pods = kube.objects("pods", NS)
    assert len(pods) == 1
    # Re-creating the Deployment adopts the orphaned ReplicaSet and keeps its pod.
    apis.apps.create_namespaced_deployment(NS, deployment("keep", replicas=1))
    kube.wait_until(lambda: kube.objects("replicasets", NS)[0]["metadata"].get("ownerReferences"))
    kube.tick()
    assert [p["metadata"]["uid"] for p in kube.objects("pods", NS)] == [pods[0]["metadata"]["uid"]]
    apis.apps.delete_namespaced_deployment("keep", NS, propagation_policy="Orphan")

    pod = apis.core.delete_namespaced_pod(kube.objects("pods", NS)[0]["metadata"]["name"], NS)
    assert isinstance(pod, client.V1Pod)  # pods answer DELETE with the object, like real
    apis.core.delete_namespace(NS)
    assert kube.objects("replicasets", NS) == [] and kube.get_object("namespaces", None, NS) is None


def test_pod_logs_tail_and_container(kube, apis):
    apis.core.create_namespaced_pod(NS, {"metadata": {"name": "two"}, "spec": {"containers": [
        {"name": "main", "image": "srv:1", "ports": [{"containerPort": 9000}]},
        {"name": "sidecar", "image": "proxy:1"}]}})
    exc = _raises(apis.core.read_namespaced_pod_log, "two", NS, container="main")
    assert exc.status == 400 and "ContainerCreating" in error_body(exc)["message"]
    kube.wait_until(lambda: apis.core.read_namespaced_pod("two", NS).status.phase == "Running")
    assert _raises(apis.core.read_namespaced_pod_log, "two", NS).status == 400  # which one?
    full = apis.core.read_namespaced_pod_log("two", NS, container="main")
    assert full.splitlines()[0] == "starting server"
    assert apis.core.read_namespaced_pod_log("two", NS, container="main",
                                             tail_lines=1) == "listening on :9000\n"
    assert apis.core.read_namespaced_pod_log("two", NS, container="sidecar",
                                             tail_lines=2).count("\n") == 2
    record = kube.requests[-1]
    assert (record.kind, record.name, record.subresource, record.query["tailLines"]) == \
        ("pods", "two", "log", "2")


def test_request_records_and_network_policies(kube, apis):
    policy = {"metadata": {"name": "deny", "labels": {"managed": "yes"}},
              "spec": {"podSelector": {}, "ingress": []}}
    apis.networking.create_namespaced_network_policy(NS, policy)
    apis.networking.list_network_policy_for_all_namespaces(label_selector="managed=yes")
    apis.networking.delete_namespaced_network_policy("deny", NS)
    create, listing, delete = kube.requests
    assert (create.method, create.path, create.kind, create.namespace, create.verb) == (
        "POST", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies",
        "networkpolicies", NS, "create")
    assert (listing.verb, listing.namespace, listing.query) == (
        "list", None, {"labelSelector": "managed=yes"})
    assert (delete.verb, delete.name, delete.status) == ("delete", "deny", 200)
    assert [r.verb for r in kube.writes()] == ["create", "delete"]
    kube.clear_requests()
    assert kube.requests == []


def test_round_trip_and_stored_objects_match_the_schema(kube, apis):
    """Whatever the fake (and its controllers) store must be valid for the real schema,
    and an object read back through the client must be accepted when sent back."""
    apis.apps.create_namespaced_deployment(NS, deployment(replicas=1))
    apis.autoscaling.create_namespaced_horizontal_pod_autoscaler(NS, {
        "metadata": {"name": "llm"}, "spec": {"maxReplicas": 2, "scaleTargetRef": {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"}}})
    wait_ready(kube, apis, "llm", 1)
    dep = apis.apps.read_namespaced_deployment("llm", NS)
    dep.metadata.labels["round"] = "trip"
    apis.apps.replace_namespaced_deployment("llm", NS, dep)
    for plural in ("deployments", "replicasets", "pods", "events", "horizontalpodautoscalers",
                   "namespaces"):
        for obj in kube.objects(plural):
            kubernetes_validate.validate(obj, kube.k8s_version, strict=True)
    assert kube.internal_errors == []


def test_context_manager_and_custom_version():
    with FakeKube(k8s_version="1.31") as kube:
        assert client.VersionApi(kube.api_client()).get_code().minor == "31"
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.CoreV1Api(kube.api_client()).list_namespace(_request_timeout=1)
