"""Traffic statistics: the gateway's counts flushed to Redis (``gateway.traffic``), read back by
``endpoints.traffic`` and served as OpenMetrics (``GET /v2/endpoint/{ns}/{name}/open-metrics``).

The end-to-end cases run the real gateway process in front of an upstream of this module's that answers
any status after any delay; the others drive the flusher in this process against the suite's Redis.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from django.conf import settings
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from controlplane import traffic as layout
from endpoints import services
from endpoints.traffic import traffic_series, traffic_totals
from gateway.traffic import Traffic
from tests.factories import endpoint_spec, make_org, make_token, make_user
from tests.gatewayrig import _LoopThread, deploy, set_state
from tests.helpers import api_client, expect, free_port

B = layout.LATENCY_BOUNDS


def buckets(**at: int) -> list[int]:
    """Non-cumulative bucket counts: ``b3=5`` puts 5 in bucket 3, ``inf=2`` 2 above the last bound."""
    counts = [0] * layout.BUCKETS
    for name, n in at.items():
        counts[len(B) if name == "inf" else int(name[1:])] = n
    return counts


# ---------------------------------------------------------------- quantile estimation (pure)
def test_quantiles_interpolate_linearly_inside_the_bucket_the_rank_falls_in():
    # 10 answers in (0.05, 0.1]: the median is halfway through that bucket.
    assert layout.quantile(buckets(b4=10), 0.5) == pytest.approx(0.075)
    assert layout.quantile(buckets(b4=10), 1.0) == pytest.approx(0.1)
    # 90 fast (bucket 0: from 0 to 5 ms), 10 slow in (0.25, 0.5]: p50 in the first, p95 halfway through the slow.
    mixed = buckets(b0=90, b6=10)
    assert layout.quantile(mixed, 0.5) == pytest.approx(0.005 * 50 / 90)
    assert layout.quantile(mixed, 0.95) == pytest.approx(0.25 + 0.25 * 5 / 10)
    assert layout.quantile(mixed, 0.9) == pytest.approx(0.005)  # exactly the fast ones: their bucket's top
    # Empty buckets between are skipped; above the last bound nothing is known: the last bound.
    assert layout.quantile(buckets(b1=1, b9=1), 0.75) == pytest.approx(2.5 + 2.5 * 0.5)
    assert layout.quantile(buckets(b0=1, inf=99), 0.99) == 300.0
    assert layout.quantile([0] * layout.BUCKETS, 0.5) is None
    with pytest.raises(ValueError):
        layout.quantile(buckets(b0=1), 1.5)
    with pytest.raises(ValueError):
        layout.quantile([1, 2], 0.5)


def test_status_classes_and_versions():
    assert [layout.CLASSES[layout.status_class(s)] for s in (101, 200, 304, 404, 499, 503, 0, 700)] == [
        "1xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "5xx"]
    assert layout.minute_key("p:", 7, "", 100) == "p:traffic:7::100"
    assert layout.totals_key("p:", 7, "canary-1") == "p:traffic:7:canary-1:total"
    with pytest.raises(ValueError):
        layout.pending_key("p:", 7, "a:b")  # would break the key layout


# ---------------------------------------------------------------- the flusher, in this process
def _flushing(coro_factory):
    """Run ``coro_factory(client)`` with an asyncio Redis client on the suite's Redis."""
    async def run():
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        try:
            return await coro_factory(client)
        finally:
            await client.aclose()
    return asyncio.run(run())


@pytest.mark.django_db
def test_flushed_counts_are_what_the_reader_returns(gateway_prefix):
    minute = int(time.time() // 60) - 3
    at = datetime.fromtimestamp(minute * 60, tz=UTC)

    async def scenario(client):
        traffic = Traffic(client, gateway_prefix, 5)
        slots = traffic.counters(41)
        for status, seconds in [(200, 0.003)] * 6 + [(404, 0.02), (503, 0.3), (503, 0.4), (302, 0.001)]:
            traffic.begin(slots)
            traffic.end(slots, layout.status_class(status), seconds)
        traffic.begin(slots)
        traffic.end(slots, layout.CLOSED, 40.0)
        assert await traffic.flush(minute)
        other = traffic.counters(41, "canary")  # another version: counted apart
        traffic.begin(other)
        traffic.end(other, layout.status_class(500), 0.01)
        assert await traffic.flush(minute + 1)
        assert await traffic.flush(minute + 2)  # nothing new: nothing written

    _flushing(scenario)
    points = traffic_series(41, at, at + timedelta(minutes=3))
    assert [p["minute"] for p in points] == [at, at + timedelta(minutes=1), at + timedelta(minutes=2)]
    first = points[0]
    assert first["requests"] == 11 and first["errors"] == 2
    assert first["by_class"] == {"1xx": 0, "2xx": 6, "3xx": 1, "4xx": 1, "5xx": 2, "closed": 1}
    assert first["buckets"] == buckets(b0=7, b2=1, b6=2, b12=1)
    assert first["p50_ms"] == pytest.approx(1000 * 0.005 * 5.5 / 7, abs=0.001)  # rounded to the microsecond
    assert first["p95_ms"] == pytest.approx(1000 * (30 + 30 * 0.45))
    assert first["latency_sum_ms"] == pytest.approx(6 * 3 + 20 + 300 + 400 + 1 + 40_000)
    empty = points[1]  # the canary's answer is not the default version's
    assert (empty["requests"], empty["errors"], empty["p50_ms"], empty["p99_ms"]) == (0, 0, None, None)
    canary = traffic_series(41, at, at + timedelta(minutes=3), version="canary")
    assert [p["errors"] for p in canary] == [0, 1, 0]
    # ``end`` inside a minute takes that minute; a naive or too long a window is refused.
    assert len(traffic_series(41, at + timedelta(seconds=30), at + timedelta(minutes=1, seconds=1))) == 2
    with pytest.raises(ValueError):
        traffic_series(41, at.replace(tzinfo=None), at.replace(tzinfo=None) + timedelta(minutes=1))
    with pytest.raises(ValueError):
        traffic_series(41, at - timedelta(days=2), at)

    totals = traffic_totals(41)
    assert totals["requests"] == 11 and totals["by_class"]["5xx"] == 2 and totals["pending"] == 0
    assert totals["buckets"] == first["buckets"] and totals["created"] is not None
    assert traffic_totals(41, version="canary")["requests"] == 1
    assert traffic_totals(99) == {"requests": 0, "by_class": dict.fromkeys(layout.CLASSES, 0),
                                  "buckets": [0] * layout.BUCKETS, "latency_sum_seconds": 0.0, "created": None,
                                  "pending": 0}
    client = redis.Redis.from_url(settings.REDIS_URL)
    ttl = client.ttl(layout.minute_key(gateway_prefix, 41, "", minute))
    assert layout.MINUTE_TTL - 60 < ttl <= layout.MINUTE_TTL
    assert client.ttl(layout.totals_key(gateway_prefix, 41, "")) > layout.MINUTE_TTL
    client.close()


@pytest.mark.django_db
def test_pending_is_summed_over_gateways_and_a_dead_gateways_count_lapses(gateway_prefix):
    async def scenario(client):
        one, two = Traffic(client, gateway_prefix, 1), Traffic(client, gateway_prefix, 1)
        a, b = one.counters(5), two.counters(5)
        for _ in range(2):
            one.begin(a)
        two.begin(b)
        assert await one.flush() and await two.flush()
        assert traffic_totals(5)["pending"] == 3
        one.end(a, 1, 0.01)
        one.end(a, 1, 0.01)
        assert await one.flush()
        assert traffic_totals(5)["pending"] == 1  # this gateway's field is gone, the other's stays
        assert one.counters(5) is a  # still in use until a flush finds it idle ...
        assert await one.flush()
        assert one.counters(5) is not a  # ... then forgotten (memory follows the endpoints in use)

    _flushing(scenario)
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = layout.pending_key(gateway_prefix, 5, "")
    client.hset(key, "dead-gateway", f"7 {int(time.time()) - 1}")  # its time passed: ignored ...
    assert traffic_totals(5)["pending"] == 1

    async def another_flush(aclient):
        three = Traffic(aclient, gateway_prefix, 1)
        three.begin(three.counters(5))
        assert await three.flush()

    _flushing(another_flush)
    assert client.hexists(key, "dead-gateway") is False  # ... and pruned by the next gateway writing
    assert traffic_totals(5)["pending"] == 2
    client.close()


def test_a_flush_to_an_unreachable_redis_drops_its_counts_and_raises_nothing(gateway_prefix):
    async def scenario():
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        traffic = Traffic(client, gateway_prefix, 1)
        slots = traffic.counters(3)
        traffic.begin(slots)
        traffic.end(slots, 1, 0.01)
        ok = await traffic.flush()
        left = traffic._take()
        await client.aclose()
        return ok, left

    ok, left = asyncio.run(scenario())
    assert ok is False
    assert left == []  # dropped, not retried: memory stays bounded during an outage


# ---------------------------------------------------------------- through the real gateway
class StatusUpstream(_LoopThread):
    """Every endpoint's Service: ``/status/<code>?ms=<delay>`` answers ``<code>`` after ``<delay>`` ms."""

    def __init__(self):
        super().__init__()
        self.port = free_port()
        app = web.Application()
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_route("*", "/{tail:.*}", self._status)
        self.runner = web.AppRunner(app, access_log=None)
        self.call(self._start())

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _status(self, request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
        return web.Response(status=int(request.match_info.get("code", "200")), text="answer")

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        self.close()


@pytest.fixture
def status_cluster(db):
    from deployments.services import cluster_register

    stub = StatusUpstream()
    yield cluster_register(name="gw", vendor="aws", region="us-east-1", in_cluster=True,
                           ingress_domain="endpoints.test", service_url_template=f"http://127.0.0.1:{stub.port}")
    stub.stop()


def wait_for_requests(endpoint_id: int, n: int, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        totals = traffic_totals(endpoint_id)
        if totals["requests"] >= n or time.monotonic() > deadline:
            return totals
        time.sleep(0.1)


def metric_families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict, family: str, name: str, **labels) -> float | None:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_gateway_answers_are_counted_and_served_as_open_metrics(gateway, status_cluster):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice)
    endpoint = set_state(endpoint, "running", ready_replica=1, target_replica=2)
    gw = gateway(GATEWAY_ACTIVITY_SECONDS="1")
    started = datetime.now(UTC)
    sent = [("/status/200", 200)] * 20 + [("/status/404", 404)] * 5 + [("/status/500", 500)] * 3
    sent += [("/status/200?ms=300", 200)] * 4
    for path, status in sent:
        expect(gw.get(f"/alice/web{path}"), status, path)

    totals = wait_for_requests(endpoint.pk, len(sent))
    assert totals["by_class"] == {"1xx": 0, "2xx": 24, "3xx": 0, "4xx": 5, "5xx": 3, "closed": 0}, totals
    assert sum(totals["buckets"]) == len(sent) and totals["pending"] == 0
    points = traffic_series(endpoint.pk, started - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1))
    assert sum(p["requests"] for p in points) == 32 and sum(p["errors"] for p in points) == 3
    assert sum(p["by_class"]["4xx"] for p in points) == 5
    summed = [sum(col) for col in zip(*(p["buckets"] for p in points), strict=True)]
    # 28 quick answers, 4 after 300 ms: the median is quick, p95 in the 300 ms answers' bucket (0.25, 0.5].
    assert layout.quantile(summed, 0.5) < 0.1, summed
    assert 0.25 <= layout.quantile(summed, 0.95) <= 0.5, summed
    busiest = max(points, key=lambda p: p["requests"])
    assert busiest["p50_ms"] is not None and busiest["p50_ms"] <= busiest["p95_ms"] <= busiest["p99_ms"]

    r = expect(api_client(make_token(alice, role="read")).get("/v2/endpoint/alice/web/open-metrics"), 200)
    assert r["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    text = r.content.decode()
    assert text.endswith("# EOF\n")
    families = metric_families(text)
    labels = {"namespace": "alice", "endpoint": "web"}
    assert sample(families, "endpoint_requests", "endpoint_requests_total", code="2xx", **labels) == 24
    assert sample(families, "endpoint_requests", "endpoint_requests_total", code="5xx") == 3
    assert sample(families, "endpoint_requests", "endpoint_requests_total", code="client_closed") == 0
    assert sample(families, "endpoint_requests", "endpoint_requests_created", code="2xx") is not None
    duration = "endpoint_request_duration_seconds"
    assert sample(families, duration, f"{duration}_count") == 32
    assert sample(families, duration, f"{duration}_bucket", le="+Inf") == 32
    assert sample(families, duration, f"{duration}_bucket", le="0.25") == 28
    assert sample(families, duration, f"{duration}_sum") >= 4 * 0.3
    assert sample(families, "endpoint_pending_requests", "endpoint_pending_requests", **labels) == 0
    assert sample(families, "endpoint_replicas_current", "endpoint_replicas_current") == 1
    assert sample(families, "endpoint_replicas_desired", "endpoint_replicas_desired") == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_requests_are_answered_while_redis_is_down(gateway, status_cluster):
    from urllib.parse import urlparse

    from tests.gatewayrig import Relay

    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice)
    target = urlparse(settings.REDIS_URL)
    relay = Relay(target.hostname, target.port or 6379)
    try:
        gw = gateway(redis_url=f"redis://127.0.0.1:{relay.port}{target.path}", GATEWAY_ACTIVITY_SECONDS="1",
                     GATEWAY_STALE_SECONDS="60")
        expect(gw.get("/alice/web/status/200"), 200)
        relay.cut()
        deadline = time.monotonic() + 10
        answered = 0
        while not gw.metric("gateway_traffic_flush_failures_total"):
            expect(gw.get("/alice/web/status/200"), 200, "while Redis is down")
            answered += 1
            assert time.monotonic() < deadline, "no flush failed while Redis was down"
            time.sleep(0.1)
        for _ in range(5):  # and after the failed flush too
            expect(gw.get("/alice/web/status/201"), 201, "after a failed flush")
        assert answered > 0
    finally:
        relay.stop()


# ---------------------------------------------------------------- the open-metrics API
@pytest.mark.django_db
def test_open_metrics_access_is_the_detail_views(gateway_prefix, settings):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    acme = make_org("acme", members={alice: "admin", bob: "read"})
    services.endpoint_create(account=acme, spec=endpoint_spec("web"), actor=alice)
    url = "/v2/endpoint/acme/web/open-metrics"
    expect(api_client(make_token(bob, role="read")).get(url), 200)  # an org reader, with a read token
    for caller, status in ((carol, 404), (None, 401)):
        client = api_client(make_token(caller) if caller else None)
        assert (client.get(url).status_code, client.get("/v2/endpoint/acme/web").status_code) == (status, status)
    expect(api_client(make_token(bob)).get("/v2/endpoint/acme/nothing/open-metrics"), 404)
    # Before any traffic: zeros, a valid exposition all the same.
    families = metric_families(api_client(make_token(alice)).get(url, HTTP_ACCEPT="application/openmetrics-text; "
                                                                  "version=1.0.0").content.decode())
    assert sample(families, "endpoint_requests", "endpoint_requests_total", code="2xx") == 0
    # Redis unreadable: an error, never zeros (a counter dropping to zero reads as a reset).
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    r = api_client(make_token(alice)).get(url)
    assert r.status_code == 503 and r.json()["code"] == "traffic_unavailable", r.content
