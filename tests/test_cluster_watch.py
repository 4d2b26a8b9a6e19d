"""Watch-driven observation on the real Kubernetes control plane (``tests/clustertier.py``): the watcher, as
the chart's worker identity, sees pods become ready and queues the pass that reports ``running``, with no
requeue or sweep to fall back on; it costs a list and a watch per kind, whatever the endpoint count."""

import threading
import time

import pytest

from deployments.watch import Watcher
from endpoints.models import Endpoint
from tests.clustertier import wait_for
from tests.factories import endpoint_spec
from tests.helpers import expect

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
QUIET = {"RECONCILE_REQUEUE_SECONDS": 600, "RECONCILE_SWEEP_SECONDS": 600, "DRIFT_SWEEP_SECONDS": 600}


@pytest.fixture
def watcher(kube_cluster, settings, request):
    """A watcher running in this process; ``@pytest.mark.muted`` makes it see changes and queue nothing."""
    settings.WATCH_CLUSTERS_SECONDS = 1
    settings.WATCH_TIMEOUT_SECONDS = 3  # short watches: every test also crosses renewals
    from django.db import connections

    muted = request.node.get_closest_marker("muted") is not None
    watching = Watcher(send=(lambda endpoint_id: None) if muted else None)
    thread = threading.Thread(target=lambda: (watching.run(), connections.close_all()), daemon=True)
    thread.start()
    assert wait_for(lambda: watching.wait_started(timeout=1), 30, "the watches to list")
    yield watching
    watching.stop.set()
    thread.join(15)


@pytest.mark.muted
def test_without_the_watch_ready_pods_are_not_seen_for_the_requeue_interval(api, kube_cluster, celery, watcher):
    """The control for the test below: with the same quiet worker and a watcher that queues nothing, pods
    that are ready leave the endpoint initializing (so nothing but the watch can move it there)."""
    celery("worker", **QUIET)
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    wait_for(lambda: Endpoint.objects.filter(name="web", state="initializing").exists(), 60, "the first pass")
    path = f"/api/v1/namespaces/{api.ns}/pods"
    wait_for(lambda: [p for p in kube_cluster.items(path) if any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))], 60, "a ready pod")
    wait_for(lambda: watcher.stats.events > 0, 30, "the watch to see it")
    time.sleep(3)
    assert Endpoint.objects.get(name="web").state == "initializing"
    assert watcher.stats.queued > 0  # it did see changes worth a pass: muted, they went nowhere


def test_pods_becoming_ready_reach_running_through_the_watch_alone(api, kube_cluster, celery, watcher):
    celery("worker", **QUIET)  # no requeue, no sweep for ten minutes: only a watch can say the pods are ready
    lists_before = watcher.stats.lists
    for name in ("web", "api"):
        spec = endpoint_spec(name, compute={"scaling": {"minReplica": 2, "maxReplica": 2}})
        expect(api.post(f"/v2/endpoint/{api.account}", spec, format="json"), 202)
    for name in ("web", "api"):
        wait_for(lambda n=name: Endpoint.objects.filter(name=n, state="running", ready_replica=2).exists(), 60,
                 f"{name} running with 2 ready, through the watch "
                 f"({Endpoint.objects.filter(name=name).values_list('state', 'message').first()}, {watcher.stats})")
    stats = watcher.stats
    assert stats.events > 0 and stats.queued >= 2, stats
    # Two endpoints' pods and deployments came and changed: still the one list per kind of the start.
    assert stats.lists == lists_before == 2, stats



def test_a_watch_the_server_ends_resumes_where_it_was(api, kube_cluster, celery, watcher):
    """Each watch lasts WATCH_TIMEOUT_SECONDS (3 here); the next starts from the last version seen, so a
    change made after several renewals is still seen, with no second list."""
    celery("worker", **QUIET)
    renewed = watcher.stats.watches + 2 * 2  # two more watches of each kind
    wait_for(lambda: watcher.stats.watches >= renewed, 30, f"the watches to end and resume ({watcher.stats})")
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("late"), format="json"), 202)
    wait_for(lambda: Endpoint.objects.filter(name="late", state="running").exists(), 60,
             f"late running through a resumed watch ({watcher.stats})")
    assert watcher.stats.lists == 2, watcher.stats
