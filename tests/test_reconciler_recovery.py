"""Reconciler behaviour found in review: failures that clear on their own, deletes that leave nothing,
rejected updates that keep the old version serving, secret rotation, and one scheduled pass per endpoint."""

import json
import threading
import time

import pytest
from django.conf import settings
from django.db import connection

from deployments.reconcile import RECHECK_FAILED_SECONDS, endpoint_reconcile
from endpoints import services
from endpoints.locks import endpoint_lock_key
from endpoints.models import Endpoint
from tests.kube_helpers import NS, converge, create, deployment


def test_a_failure_read_from_pods_is_looked_at_again_and_clears(alice, cluster, fake_kube, fake_hub):
    fake_kube.gpu_capacity = 2
    big = create(alice, "big", compute={"accelerator": "gpu", "instanceType": "nvidia-l4", "instanceSize": "x4"})
    converge(big.pk, "failed")
    outcome = endpoint_reconcile(endpoint_id=big.pk)
    assert outcome.state == "failed" and outcome.requeue_after == RECHECK_FAILED_SECONDS
    fake_kube.gpu_capacity = 8  # the cluster autoscaler added a node
    assert converge(big.pk, "running").ready_replica >= 1


def test_permanent_rejections_are_not_requeued(alice, cluster, fake_kube, fake_hub):
    missing = create(alice, "missing", model={"repository": "nobody/nothing"})
    outcome = endpoint_reconcile(endpoint_id=missing.pk)
    assert outcome.state == "failed" and outcome.requeue_after is None
    fake_kube.pod_ready_seconds = 60  # still starting after this pass, however slow the machine is
    starting = create(alice, "starting")
    outcome = endpoint_reconcile(endpoint_id=starting.pk)
    assert outcome.state == "initializing" and outcome.requeue_after == settings.RECONCILE_REQUEUE_SECONDS


def test_an_update_kubernetes_rejects_keeps_the_previous_version_serving(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice).pk, "running")
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice,
                             patch={"compute": {"scaling": {"maxReplica": 2}}})
    fake_kube.fail_next(1, status=422)
    endpoint_reconcile(endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.state == "updateFailed" and endpoint.url and "previous version keeps serving" in endpoint.message


def test_a_pass_that_failed_midway_still_gets_its_objects_deleted(alice, cluster, fake_kube, fake_hub):
    endpoint = create(alice)
    fake_kube.fail_next(1, status=422, methods=("POST",))
    endpoint_reconcile(endpoint_id=endpoint.pk)  # the very first write is refused: failed
    endpoint.refresh_from_db()
    assert endpoint.state == "failed" and endpoint.first_applied_at is not None
    # Something the failed pass (or a crashed worker) left behind, carrying the endpoint's label:
    fake_kube.seed("services", {"metadata": {"name": "ep-web", "namespace": "default", "labels": {
        "endpoints.controlplane.dev/id": str(endpoint.pk)}}, "spec": {"ports": [{"port": 80}]}})
    services.endpoint_delete(account=alice.personal_account, name="web", actor=alice)
    assert Endpoint.objects.get(pk=endpoint.pk).state == "deleting"  # not dropped on the fast path


def test_teardown_looks_for_objects_even_when_no_pass_finished(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice).pk, "running")
    Endpoint.objects.filter(pk=endpoint.pk).update(first_applied_at=None, intent="delete", state="deleting")
    converge(endpoint.pk, "gone")
    assert fake_kube.get_object("deployments", NS, "ep-web") is None


def test_rotating_a_secret_rolls_the_pods_without_revealing_it(alice, cluster, fake_kube, fake_hub):
    converge(create(alice, model={"secrets": {"TOKEN": "first-value"}}).pk, "running")
    before = deployment(fake_kube)["spec"]["template"]["metadata"]["annotations"]
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice,
                             patch={"model": {"secrets": {"TOKEN": "second-value"}}})
    endpoint = converge(Endpoint.objects.get(name="web").pk, "running")
    after = deployment(fake_kube)["spec"]["template"]["metadata"]["annotations"]
    key = "endpoints.controlplane.dev/secrets-version"
    assert before[key] != after[key]
    text = json.dumps(deployment(fake_kube))
    assert "first-value" not in text and "second-value" not in text
    assert endpoint.observed_generation == endpoint.generation


def test_at_most_one_scheduled_pass_per_endpoint(alice, broker):
    from controlplane.queue import reconcile_schedule
    from workers.tasks import reconcile_sweep_task

    endpoint = create(alice)
    assert reconcile_schedule(endpoint.pk, 30) is True
    assert reconcile_schedule(endpoint.pk, 30) is False
    assert reconcile_sweep_task.run() == 0  # the sweep sees the pending pass and adds none
    assert len(broker.messages()) == 1  # one pass, whoever asked
    broker.redis.delete(f"reconcile:scheduled:{broker.queue}:{endpoint.pk}")  # as when its pass starts
    assert reconcile_sweep_task.run() == 1
    assert len(broker.messages()) == 2



def test_asks_before_a_pass_starts_share_it(alice, broker):
    """The watcher's many asks while an endpoint's pods start (reconcile_soon) queue one pass until it starts;
    an ask after it started queues the next."""
    from controlplane.queue import pass_starting, reconcile_soon

    endpoint = create(alice)
    broker.clear()
    assert [reconcile_soon(endpoint.pk) for _ in range(5)] == [True, False, False, False, False]
    assert len(broker.messages()) == 1
    pass_starting(endpoint.pk, scheduled=False)  # as the task does before its pass
    assert reconcile_soon(endpoint.pk) is True
    assert len(broker.messages()) == 2

@pytest.mark.django_db(transaction=True)
def test_a_pass_asked_for_while_another_runs_follows_it_at_once(alice, cluster, fake_kube, fake_hub, broker):
    """The asker does not wait a second and retry: the holder runs once more right after its pass (its
    second pass starts after the ask), and one pass is scheduled should the holder die first."""
    from workers.tasks import reconcile_endpoint_task

    endpoint = converge(create(alice).pk, "running")
    broker.clear()
    fake_kube.clear_requests()
    fake_kube.hang_next(1, 1.0)  # the holder's first request: the ask lands while its pass runs

    def holder() -> None:
        reconcile_endpoint_task.run(endpoint.pk)
        connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    key = endpoint_lock_key(endpoint.pk)
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                           "((classid::bigint << 32) | objid::bigint) = %s", [key])
            if cursor.fetchone()[0]:
                break
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.01)
    lists_before = passes(fake_kube)
    reconcile_endpoint_task.run(endpoint.pk)  # busy: asks and returns
    assert passes(fake_kube) == lists_before  # it ran no pass of its own
    thread.join(20)
    assert passes(fake_kube) == 2, [f"{r.verb} {r.path}" for r in fake_kube.requests]
    scheduled = broker.messages()
    assert len(scheduled) == 1, scheduled  # the safety net, at most one per endpoint


def passes(fake_kube) -> int:
    """Reconcile passes seen by the API server: each lists the endpoint's Deployments once."""
    return sum(1 for r in fake_kube.requests if r.verb == "list" and r.kind == "deployments")
