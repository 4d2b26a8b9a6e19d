"""Scale-to-zero through the gateway: requests to a zeroed endpoint wake it and are held until a replica
is ready (none dropped), the hold queue is bounded, and idle endpoints are scaled to zero by the sweep.
"""

import asyncio
import time
from datetime import timedelta

import aiohttp
import pytest
import redis
from django.conf import settings
from django.utils import timezone

from endpoints import services
from endpoints.idle import idle_sweep
from endpoints.models import Endpoint, EndpointEvent
from tests.factories import endpoint_spec, make_token, make_user
from tests.gatewayrig import deploy, error_of, set_state, start_worker, stop_process
from tests.helpers import expect
from tests.kube_helpers import converge

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ZERO_SCALING = {"compute": {"scaling": {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 15}}}


async def burst(url: str, n: int, headers: dict) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int) -> tuple[int, str]:
            async with session.post(url, json={"inputs": i}, headers=headers) as r:
                return r.status, await r.text()

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.fixture
def kube_cluster(fake_kube, fake_hub, upstream, tmp_path, db):
    """The fake API server as aws/us-east-1, its Services all reaching the stub upstream, which answers only
    while the endpoint's Deployment has a ready replica (as a Service with no ready pod would not)."""
    from deployments.services import cluster_register

    path = tmp_path / "kubeconfig.yaml"
    fake_kube.write_kubeconfig(str(path))
    upstream.ready = lambda: any((d.get("status") or {}).get("readyReplicas", 0) >= 1
                                 for d in fake_kube.objects("deployments", "ie-alice"))
    return cluster_register(name="fake", vendor="aws", region="us-east-1", kubeconfig_text=path.read_text(),
                            ingress_domain="endpoints.test", service_url_template=upstream.url)


def test_hundred_concurrent_requests_to_a_zeroed_endpoint_all_succeed(gateway, kube_cluster, fake_kube, upstream,
                                                                      broker, tmp_path):
    alice = make_user("alice")
    token = make_token(alice)
    endpoint = services.endpoint_create(account=alice.personal_account,
                                        spec=endpoint_spec("llm", type="protected", **ZERO_SCALING), actor=alice)
    converge(endpoint.pk, "running")
    services.endpoint_scale_to_zero(account=alice.personal_account, name="llm", actor=alice)
    converge(endpoint.pk, "scaledToZero")
    deadline = time.monotonic() + 10
    while upstream.ready():
        live = [(d["spec"], d.get("status")) for d in fake_kube.objects("deployments", "ie-alice")]
        assert time.monotonic() < deadline, ("the zeroed Deployment kept a ready replica",
                                             fake_kube.internal_errors[-3:], live)
        time.sleep(0.05)
    broker.clear()
    fake_kube.pod_ready_seconds = 3.0  # the cold start lasts a few seconds
    worker = start_worker(tmp_path / "worker.log")
    try:
        gw = gateway()
        started = time.monotonic()
        results = asyncio.run(burst(f"{gw.url}/alice/llm/generate", 100, {"Authorization": f"Bearer {token}"}))
        elapsed = time.monotonic() - started
    finally:
        stop_process(worker)
        print((tmp_path / "worker.log").read_text()[-4000:])
    statuses = [status for status, _ in results]
    assert statuses == [200] * 100, {s: statuses.count(s) for s in set(statuses)}
    assert elapsed >= 2.5  # they really waited for the cold start
    assert len([r for r in upstream.requests if r[1] == "/generate"]) == 100
    endpoint.refresh_from_db()
    assert endpoint.intent == "run"
    wake = EndpointEvent.objects.get(endpoint=endpoint, kind="wake")
    assert wake.actor_name == "system" and wake.to_state == "initializing"
    assert gw.metric("gateway_wakeups_total", namespace="ie-alice", endpoint="ep-llm") >= 1
    assert gw.metric("gateway_pending_requests", namespace="ie-alice", endpoint="ep-llm") == 0
    assert gw.metric("gateway_requests_total", namespace="ie-alice", endpoint="ep-llm", code="2xx") == 100


def test_held_request_is_released_when_the_status_says_running(gateway, gateway_cluster, upstream, broker):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice, **ZERO_SCALING)
    services.endpoint_scale_to_zero(account=alice.personal_account, name="web", actor=alice)
    broker.clear()
    upstream.ready = lambda: False
    gw = gateway()

    async def scenario():
        held = asyncio.create_task(burst(f"{gw.url}/alice/web/generate", 3, {}))
        deadline = time.monotonic() + 10
        while not any(b"workers.endpoint_wake" in m for m in broker.messages()):
            assert time.monotonic() < deadline, "no wake-up was sent"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert not held.done()  # still waiting: no replica yet
        # What the worker and then the reconciler would do: take the wake, later report a ready replica.
        await asyncio.to_thread(services.endpoint_wake, endpoint_id=endpoint.pk)
        upstream.ready = lambda: True
        await asyncio.to_thread(set_state, endpoint, "running")
        return await held

    assert [status for status, _ in asyncio.run(scenario())] == [200, 200, 200]


def test_queue_overflow_gets_429_and_hold_timeout_503(gateway, gateway_cluster, upstream, broker):
    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice, **ZERO_SCALING)
    services.endpoint_scale_to_zero(account=alice.personal_account, name="web", actor=alice)
    gw = gateway(GATEWAY_QUEUE_LIMIT="5")
    started = time.monotonic()
    results = asyncio.run(burst(f"{gw.url}/alice/web/generate", 8, {"X-Scale-Up-Timeout": "2"}))
    codes = sorted(error_of_text(status, text) for status, text in results)
    assert codes == [(429, "too_many_waiting")] * 3 + [(503, "endpoint_waking")] * 5
    assert time.monotonic() - started >= 2
    r = gw.get("/alice/web/x", headers={"X-Scale-Up-Timeout": "0"})
    assert error_of(r) == (503, "endpoint_waking") and int(r.headers["Retry-After"]) > 0
    assert any(b"workers.endpoint_wake" in m for m in broker.messages())


def test_a_client_that_gives_up_leaves_the_hold_queue(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice, **ZERO_SCALING)
    services.endpoint_scale_to_zero(account=alice.personal_account, name="web", actor=alice)
    gw = gateway()

    async def give_up() -> None:
        timeout = aiohttp.ClientTimeout(total=1)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(session.get(f"{gw.url}/alice/web/x") for _ in range(5)), return_exceptions=True)

    asyncio.run(give_up())
    deadline = time.monotonic() + 5
    while gw.metric("gateway_held_requests", namespace="ie-alice", endpoint="ep-web") != 0:
        assert time.monotonic() < deadline, "abandoned requests still held"
        time.sleep(0.1)
    assert gw.metric("gateway_pending_requests", namespace="ie-alice", endpoint="ep-web") == 0


def test_paused_endpoint_answers_503_saying_so(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice)
    services.endpoint_pause(account=alice.personal_account, name="web", actor=alice)
    gw = gateway()
    r = gw.get("/alice/web/x")
    assert r.status_code == 503 and r.json() == {"error": "The endpoint is paused; resume it to serve requests",
                                                  "code": "endpoint_paused"}, r.content


def error_of_text(status: int, text: str) -> tuple[int, str]:
    import json

    return status, json.loads(text)["code"]


# ---------------------------------------------------------------- idle sweep
def test_gateway_records_activity_at_most_every_few_seconds(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice, **ZERO_SCALING)
    gw = gateway(GATEWAY_ACTIVITY_SECONDS="5")
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"{settings.GATEWAY_REDIS_PREFIX}activity"
    before = time.time()
    expect(gw.get("/alice/web/x"), 200)
    deadline = time.monotonic() + 5
    while client.zscore(key, str(endpoint.pk)) is None:
        assert time.monotonic() < deadline, "no activity recorded"
        time.sleep(0.05)
    first = client.zscore(key, str(endpoint.pk))
    assert first >= before - 1
    for _ in range(20):
        gw.get("/alice/web/x")
    time.sleep(0.3)
    assert client.zscore(key, str(endpoint.pk)) == first  # throttled: no write per request
    client.close()


def test_idle_sweep_scales_to_zero_after_the_timeout_with_a_controlled_clock(gateway_prefix, gateway_cluster):
    alice = make_user("alice")
    idle = deploy(alice.personal_account, "idle", "public", alice, **ZERO_SCALING)
    busy = deploy(alice.personal_account, "busy", "public", alice, **ZERO_SCALING)
    floor = deploy(alice.personal_account, "floor", "public", alice)  # minReplica 1: never
    hidden = deploy(alice.personal_account, "hidden", "private", alice, **ZERO_SCALING)  # traffic unseen: never
    t0 = timezone.now()
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"{settings.GATEWAY_REDIS_PREFIX}activity"
    client.zadd(key, {str(idle.pk): t0.timestamp(), str(busy.pk): (t0 + timedelta(minutes=10)).timestamp(),
                      str(floor.pk): t0.timestamp()})
    client.close()

    assert idle_sweep(now=t0 + timedelta(minutes=14, seconds=59)) == []
    assert idle_sweep(now=t0 + timedelta(minutes=15, seconds=1)) == [idle.pk]
    states = dict(Endpoint.objects.values_list("name", "state"))
    assert states == {"idle": "scaledToZero", "busy": "running", "floor": "running", "hidden": "running"}
    event = EndpointEvent.objects.filter(endpoint=idle, kind="scaleToZero").get()
    assert event.actor_name == "system"
    assert idle_sweep(now=t0 + timedelta(minutes=25, seconds=1)) == [busy.pk]
    assert idle_sweep(now=t0 + timedelta(days=1)) == []  # idempotent: nothing left to scale
    assert Endpoint.objects.get(pk=hidden.pk).state == "running"


def test_idle_sweep_does_nothing_when_activity_cannot_be_read(gateway_prefix, gateway_cluster, settings):
    from controlplane.feed import _client

    alice = make_user("alice")
    deploy(alice.personal_account, "idle", "public", alice, **ZERO_SCALING)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    _client.cache_clear()
    try:
        assert idle_sweep(now=timezone.now() + timedelta(days=1)) == []
    finally:
        _client.cache_clear()
    assert Endpoint.objects.get(name="idle").state == "running"
