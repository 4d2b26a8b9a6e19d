"""Scheduled scaling on the real API server: the HPA's bounds follow the window in force.

The clock is the test's: it calls beat's service (``schedules_apply``) with its own ``now``, and a real
worker does the reconciles that queues. No beat process runs (it would apply the real clock's window).
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from endpoints.models import Endpoint
from endpoints.schedule_sweep import schedules_apply
from tests.clustertier import wait_for
from tests.factories import endpoint_spec
from tests.helpers import expect

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PARIS = ZoneInfo("Europe/Paris")
OFFICE = {"cron": "0 8 * * 1-5", "timezone": "Europe/Paris", "durationMinutes": 600, "minReplica": 2, "maxReplica": 3}


def test_the_real_hpa_takes_the_window_bounds_and_gives_them_back(api, kube_cluster, celery):
    celery("worker")
    spec = endpoint_spec("web", compute={"scaling": {"minReplica": 1, "maxReplica": 2, "schedules": [OFFICE]}})
    expect(api.post(f"/v2/endpoint/{api.account}", spec, format="json"), 202)
    hpa = f"/apis/autoscaling/v2/namespaces/{api.ns}/horizontalpodautoscalers/ep-web"

    def bounds() -> tuple[int, int] | None:
        found = kube_cluster.get(hpa)
        return found and (found["spec"]["minReplicas"], found["spec"]["maxReplicas"])

    def running() -> bool:
        return Endpoint.objects.filter(name="web", state="running").exists()

    # A Sunday: the base bounds, whatever window the real clock was in at create.
    schedules_apply(now=datetime(2026, 5, 31, 12, tzinfo=PARIS))
    wait_for(running, 120, lambda: f"running, not {Endpoint.objects.values_list('state', 'message').first()}")
    wait_for(lambda: bounds() == (1, 2), 60, lambda: f"HPA (1, 2), not {bounds()}")

    endpoint_id = Endpoint.objects.get(name="web").pk
    assert schedules_apply(now=datetime(2026, 6, 1, 8, tzinfo=PARIS)) == [endpoint_id]  # Monday 08:00
    wait_for(lambda: bounds() == (2, 3), 60, lambda: f"HPA (2, 3), not {bounds()}")
    deployment = f"/apis/apps/v1/namespaces/{api.ns}/deployments/ep-web"
    wait_for(lambda: kube_cluster.get(deployment)["spec"]["replicas"] >= 2, 60, "the raised minimum applied")

    assert schedules_apply(now=datetime(2026, 6, 1, 18, tzinfo=PARIS)) == [endpoint_id]  # the window ends
    wait_for(lambda: bounds() == (1, 2), 60, lambda: f"HPA back to (1, 2), not {bounds()}")
    assert Endpoint.objects.get(pk=endpoint_id).schedule_active is None
