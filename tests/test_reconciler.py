"""The reconciler against the fake Kubernetes API server (real client, real HTTP, strict validation)."""

import random
import time

import pytest

from deployments.reconcile import Retry, endpoint_reconcile
from deployments.selectors import endpoints_unconverged
from endpoints import services
from endpoints.models import Endpoint, EndpointEvent
from tests.kube_helpers import NS, converge, create, deployment


def test_converges_from_empty_to_running_and_then_writes_nothing(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice).pk, "running")
    assert endpoint.pinned_revision == "1" * 40 and endpoint.observed_generation == endpoint.generation
    assert endpoint.url.startswith("https://web-") and endpoint.url.endswith(".endpoints.test")
    assert endpoint.ready_replica == 1 and endpoint.first_applied_at is not None
    assert fake_kube.get_object("namespaces", None, NS)["metadata"]["labels"]["app.kubernetes.io/managed-by"] \
        == "controlplane"
    assert fake_kube.get_object("resourcequotas", NS, "endpoints-quota") is not None
    assert fake_kube.get_object("networkpolicies", NS, "default-deny-ingress") is not None
    for kind in ("deployments", "services", "horizontalpodautoscalers"):
        obj = fake_kube.get_object(kind, NS, "ep-web")
        assert obj["metadata"]["labels"]["endpoints.controlplane.dev/id"] == str(endpoint.pk)
    init = deployment(fake_kube)["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:5] == ["hf", "download", "gpt2", "--revision", "1" * 40]
    states = list(EndpointEvent.objects.filter(kind="state").values_list("to_state", flat=True))
    assert states[-1] == "running"

    fake_kube.clear_requests()
    for _ in range(3):
        endpoint_reconcile(endpoint_id=endpoint.pk)
    assert fake_kube.writes() == [], fake_kube.writes()
    assert len(fake_hub.calls) == 1  # pinned once, never asked again


def test_a_later_push_changes_nothing_until_the_user_updates(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice).pk, "running")
    fake_hub.repos["gpt2"]["main"] = "9" * 40
    endpoint_reconcile(endpoint_id=endpoint.pk)
    assert "1" * 40 in deployment(fake_kube)["spec"]["template"]["spec"]["initContainers"][0]["command"]
    services.endpoint_update(account=alice.personal_account, name="web", patch={"model": {"revision": "v1"}},
                             actor=alice)
    endpoint = converge(endpoint.pk, "running")
    assert endpoint.pinned_revision == "2" * 40
    assert "2" * 40 in deployment(fake_kube)["spec"]["template"]["spec"]["initContainers"][0]["command"]


def test_updates_roll_replicas_and_instance(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice).pk, "running")
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice,
                             patch={"compute": {"instanceSize": "x4", "scaling": {"minReplica": 2, "maxReplica": 3}}})
    assert Endpoint.objects.get().state == "updating"
    endpoint = converge(endpoint.pk, "running")
    hpa = fake_kube.get_object("horizontalpodautoscalers", NS, "ep-web")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 3)
    container = deployment(fake_kube)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "3600m"
    assert deployment(fake_kube)["spec"]["replicas"] == 2  # the raised minimum is part of the rollout itself
    deadline = time.monotonic() + 15
    while endpoint.ready_replica < 2:  # running once the new version serves; the second replica follows
        assert time.monotonic() < deadline, endpoint.message
        endpoint = converge(endpoint.pk, "running")


def test_crash_looping_update_is_update_failed_while_old_pods_serve(alice, cluster, fake_kube, fake_hub):
    image = {"custom": {"url": "ghcr.io/acme/server:1", "healthRoute": "/health", "port": 8080}}
    endpoint = converge(create(alice, model={"image": image}).pk, "running")
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice,
                             patch={"model": {"image": {"custom": {**image["custom"],
                                                                    "url": "ghcr.io/acme/server:crashloop"}}}})
    endpoint = converge(endpoint.pk, "updateFailed")
    assert "CrashLoopBackOff" in endpoint.message
    assert endpoint.ready_replica >= 1  # the previous version keeps serving
    assert endpoint.url is not None


def test_first_deploy_failures_say_why(alice, cluster, fake_kube, fake_hub):
    pull = converge(create(alice, "pull", model={"image": {"custom": {"url": "x/imagepullfail:1"}}}).pk, "failed")
    assert "pulled" in pull.message
    fake_kube.gpu_capacity = 2
    big = create(alice, "big", compute={"accelerator": "gpu", "instanceType": "nvidia-l4", "instanceSize": "x4"})
    big = converge(big.pk, "failed")
    assert "Unschedulable" in big.message and "nvidia.com/gpu" in big.message
    gpu = deployment(fake_kube, "ep-big")["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_pause_resume_scale_to_zero_and_delete(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice).pk, "running")
    url = endpoint.url
    services.endpoint_pause(account=alice.personal_account, name="web", actor=alice)
    endpoint = converge(endpoint.pk, "paused")
    assert deployment(fake_kube)["spec"]["replicas"] == 0 and endpoint.url is None
    assert fake_kube.get_object("horizontalpodautoscalers", NS, "ep-web") is None
    services.endpoint_resume(account=alice.personal_account, name="web", actor=alice)
    endpoint = converge(endpoint.pk, "running")
    assert deployment(fake_kube)["spec"]["replicas"] == 1 and endpoint.url == url
    assert fake_kube.get_object("horizontalpodautoscalers", NS, "ep-web") is not None
    services.endpoint_scale_to_zero(account=alice.personal_account, name="web", actor=alice)
    endpoint = converge(endpoint.pk, "scaledToZero")
    assert deployment(fake_kube)["spec"]["replicas"] == 0 and endpoint.url == url
    assert fake_kube.get_object("horizontalpodautoscalers", NS, "ep-web") is None
    services.endpoint_delete(account=alice.personal_account, name="web", actor=alice)
    services.endpoint_delete(account=alice.personal_account, name="web", actor=alice)  # repeat is safe
    converge(endpoint.pk, "gone")
    for kind in ("deployments", "services", "horizontalpodautoscalers", "secrets"):
        assert [o for o in fake_kube.objects(kind, NS) if o["metadata"]["name"].startswith("ep-web")] == [], kind
    assert not EndpointEvent.objects.exists()


def test_missing_cluster_waits_then_converges_once_registered(alice, fake_kube, fake_hub, tmp_path):
    endpoint = create(alice)
    endpoint_reconcile(endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.state == "pending" and "No cluster is registered for aws/us-east-1" in endpoint.message
    assert endpoint.pk in endpoints_unconverged()
    from django.core.management import call_command

    path = tmp_path / "kubeconfig.yaml"
    fake_kube.write_kubeconfig(str(path))
    call_command("register_cluster", "--name", "late", "--vendor", "aws", "--region", "us-east-1",
                 "--kubeconfig", str(path), "--ingress-domain", "ep.test")
    converge(endpoint.pk, "running")


def test_removed_secret_is_pruned(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice, model={"secrets": {"TOKEN": "planted-value"}}).pk, "running")
    secret = fake_kube.get_object("secrets", NS, "secrets-ep-web")
    assert secret is not None
    container = deployment(fake_kube)["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "secrets-ep-web"}}]
    assert "planted-value" not in str(deployment(fake_kube))
    services.endpoint_update(account=alice.personal_account, name="web", patch={"model": {"secrets": {}}},
                             actor=alice)
    converge(endpoint.pk, "running")
    assert fake_kube.get_object("secrets", NS, "secrets-ep-web") is None


def test_transient_errors_retry_and_permanent_ones_fail(alice, cluster, fake_kube, fake_hub):
    endpoint = create(alice)
    fake_kube.fail_next(1, status=429, retry_after=7)
    with pytest.raises(Retry) as retry:
        endpoint_reconcile(endpoint_id=endpoint.pk)
    assert retry.value.delay == 7
    fake_kube.fail_next(1, status=503)
    with pytest.raises(Retry):
        endpoint_reconcile(endpoint_id=endpoint.pk)
    assert "retrying" in Endpoint.objects.get().message
    converge(endpoint.pk, "running")
    other = create(alice, "other")
    fake_kube.fail_next(1, status=422)
    endpoint_reconcile(endpoint_id=other.pk)
    other.refresh_from_db()
    assert other.state == "failed" and "Rejected by Kubernetes" in other.message


def test_revision_errors(alice, cluster, fake_kube, fake_hub):
    missing = create(alice, "missing", model={"repository": "nobody/nothing"})
    endpoint_reconcile(endpoint_id=missing.pk)
    missing.refresh_from_db()
    assert missing.state == "failed" and "nobody/nothing" in missing.message
    bad_rev = create(alice, "badrev", model={"revision": "no-such-branch"})
    endpoint_reconcile(endpoint_id=bad_rev.pk)
    bad_rev.refresh_from_db()
    assert bad_rev.state == "failed" and "no-such-branch" in bad_rev.message
    fake_hub.fail_next(1)
    flaky = create(alice, "flaky")
    with pytest.raises(Retry):
        endpoint_reconcile(endpoint_id=flaky.pk)
    calls = len(fake_hub.calls)
    pinned = create(alice, "pinned", model={"revision": "a" * 40})
    assert converge(pinned.pk, "running").pinned_revision == "a" * 40
    assert len(fake_hub.calls) == calls  # a full sha needs no Hub call


def test_kubernetes_down_keeps_last_state_and_recovers(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice).pk, "running")
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice,
                             patch={"compute": {"scaling": {"maxReplica": 2}}})
    fake_kube.unreachable(True)
    with pytest.raises(Retry):
        endpoint_reconcile(endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.state == "updating" and "unreachable" in endpoint.message
    fake_kube.unreachable(False)
    assert converge(endpoint.pk, "running").observed_generation == endpoint.generation


def test_thirty_percent_failures_twenty_endpoints_converge_without_duplicates(alice, cluster, fake_kube, fake_hub):
    from quotas.services import quota_set

    quota_set(account=alice.personal_account, accelerator="cpu", limit=100)
    ids = [create(alice, f"ep{i}").pk for i in range(20)]
    fake_kube.set_failure_rate(0.3, seed=7)
    pending, deadline = set(ids), time.monotonic() + 60
    rng = random.Random(1)
    while pending and time.monotonic() < deadline:
        endpoint_id = rng.choice(sorted(pending))
        try:
            endpoint_reconcile(endpoint_id=endpoint_id)
        except Retry:
            continue
        if Endpoint.objects.get(pk=endpoint_id).state == "running":
            pending.discard(endpoint_id)
    fake_kube.set_failure_rate(0)
    assert not pending, [Endpoint.objects.get(pk=i).message for i in pending]
    for kind in ("deployments", "services", "horizontalpodautoscalers"):
        names = [o["metadata"]["name"] for o in fake_kube.objects(kind, NS)]
        assert sorted(names) == sorted(f"ep-ep{i}" for i in range(20)), kind


def test_concurrent_reconcile_of_one_endpoint_is_refused(alice, cluster, fake_kube, fake_hub):
    import threading

    from django.db import connection

    from endpoints.locks import endpoint_lock_key

    endpoint = create(alice)
    held, release = threading.Event(), threading.Event()

    def hold():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [endpoint_lock_key(endpoint.pk)])
            held.set()
            release.wait(10)
            cursor.execute("SELECT pg_advisory_unlock(%s)", [endpoint_lock_key(endpoint.pk)])
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(Retry, match="another worker"):
            endpoint_reconcile(endpoint_id=endpoint.pk)
        assert fake_kube.writes() == []
    finally:
        release.set()
        thread.join()
    # The refused pass changed nothing, and the lock is free again: this session takes it at once.
    assert Endpoint.objects.get(pk=endpoint.pk).state == endpoint.state
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [endpoint_lock_key(endpoint.pk)])
        assert cursor.fetchone() == (True,), "the holder's lock was not released"
        cursor.execute("SELECT pg_advisory_unlock(%s)", [endpoint_lock_key(endpoint.pk)])
    converge(endpoint.pk, "running")
