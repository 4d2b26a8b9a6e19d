"""Redis (the broker) stopped: writes still succeed, readiness says so, and the sweep catches up.

The broker is a real redis-server of the test's own (``tests/hardening_fixtures.py``), stopped and
started again mid-test; the live server's Celery app publishes to it. Postgres is the truth, so creates,
updates and lifecycle actions answer 2xx while Redis is down; each lost publish is logged as
``task.enqueue_failed`` and fails fast. Once Redis is back, one run of the sweep task re-enqueues
every endpoint whose change was never published.

Before ``CELERY_BROKER_TRANSPORT_OPTIONS`` got ``max_retries: 0`` a create took 6 s with Redis stopped
(kombu re-connecting with 2 s and 4 s sleeps); before ``socket_timeout: 2``, 5 s with Redis frozen.
"""

import base64
import json
import logging
import signal
import time

import pytest

from controlplane.celery import app
from endpoints.models import Endpoint
from tests.factories import endpoint_spec, make_token, make_user
from tests.hardening_fixtures import celery_publishing_to, running_redis
from tests.helpers import expect, live_api
from workers.tasks import reconcile_sweep_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# A create answers within this while the broker is stopped (refused connections: the publish gives up
# at once) or frozen (accepts, never answers: the socket timeout, 2 s, bounds it).
STOPPED_BUDGET_SECONDS = 1.0
FROZEN_BUDGET_SECONDS = 3.0


def queued_endpoint_ids(server) -> list[int]:
    """Endpoint ids of the reconcile messages waiting in the default queue of ``server``."""
    ids = []
    with server.client() as client:
        for raw in client.lrange(app.conf.task_default_queue, 0, -1):
            message = json.loads(raw)
            assert message["headers"]["task"] == "workers.reconcile_endpoint"
            ids.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return ids


@pytest.fixture
def celery_broker(tmp_path, settings):
    """A redis-server of this test's own, as the live server's broker."""
    with running_redis(tmp_path) as server, celery_publishing_to(server, settings):
        yield server


@pytest.fixture
def api(live_server):
    call = live_api(live_server.url, make_token(make_user("alice")))
    yield call
    call.close()


def test_writes_succeed_while_the_broker_is_down_and_the_sweep_reenqueues_them(api, celery_broker, caplog):
    caplog.set_level(logging.INFO)
    r = api("POST", "/v2/endpoint/alice", json=endpoint_spec("before"))
    assert r.status_code == 202, r.text
    before = Endpoint.objects.get(name="before").pk
    assert queued_endpoint_ids(celery_broker) == [before]

    celery_broker.stop()
    timings = {}
    for name in ("down-1", "down-2"):
        started = time.monotonic()
        r = api("POST", "/v2/endpoint/alice", json=endpoint_spec(name))
        timings[name] = time.monotonic() - started
        assert r.status_code == 202, r.text
    started = time.monotonic()
    r = api("PUT", "/v2/endpoint/alice/before", json={"compute": {"scaling": {"maxReplica": 2}}})
    timings["update"] = time.monotonic() - started
    assert r.status_code == 200, r.text
    r = api("POST", "/v2/endpoint/alice/down-1/pause")
    assert r.status_code == 200 and r.json()["status"]["state"] == "paused", r.text
    print("publish with the broker down, seconds:", {k: round(v, 3) for k, v in timings.items()})
    assert max(timings.values()) < STOPPED_BUDGET_SECONDS, timings

    changed = set(Endpoint.objects.filter(name__in=["before", "down-1", "down-2"]).values_list("pk", flat=True))
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("task.enqueue_failed")]
    assert len(failed) == 4, failed  # create, create, update, pause: one failed publish each
    assert all(m.startswith("task.enqueue_failed task=workers.reconcile_endpoint args=(") for m in failed), failed
    assert {int(m.split("args=(")[1].split(",")[0]) for m in failed} == changed

    ready = api("GET", "/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["broker"].startswith("unavailable"), ready.json()
    assert ready.json()["checks"]["database"] == "ok", ready.json()
    # Reads never needed the broker.
    expect(api("GET", "/v2/endpoint/alice"), 200)

    celery_broker.start()  # the same port, empty: every message published before the outage is gone too
    expect(api("GET", "/readyz"), 200)
    assert queued_endpoint_ids(celery_broker) == []
    swept = reconcile_sweep_task.apply().get()
    queued = queued_endpoint_ids(celery_broker)
    assert swept == len(queued)
    assert changed <= set(queued), (changed, queued)
    assert sorted(queued) == sorted(set(queued))  # once each


def test_a_frozen_broker_costs_a_write_at_most_the_socket_timeout(api, celery_broker, caplog):
    expect(api("POST", "/v2/endpoint/alice", json=endpoint_spec("before")), 202)
    celery_broker.process.send_signal(signal.SIGSTOP)  # the port still accepts; nothing ever answers
    try:
        for name in ("frozen-1", "frozen-2"):
            started = time.monotonic()
            r = api("POST", "/v2/endpoint/alice", json=endpoint_spec(name))
            elapsed = time.monotonic() - started
            assert r.status_code == 202, r.text
            assert elapsed < FROZEN_BUDGET_SECONDS, elapsed
        ready = api("GET", "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"].startswith("unavailable"), ready.text
    finally:
        celery_broker.process.send_signal(signal.SIGCONT)
    assert sum(r.getMessage().startswith("task.enqueue_failed task=workers.reconcile_endpoint") for r in caplog.records) == 2
    expect(api("GET", "/readyz"), 200)
    swept = reconcile_sweep_task.apply().get()
    assert set(Endpoint.objects.values_list("pk", flat=True)) <= set(queued_endpoint_ids(celery_broker))
    assert swept == 3
