"""Canary traffic splitting (``gateway.split``): the chooser alone, then the real gateway process in front of the
stub upstream, whose canary is the stub under a path prefix (``CANARY_PREFIX``), so every answer says which side
served it.

The control plane does not publish ``"canary"`` yet: these tests publish the route record themselves, as
``deployments.feed.route_publish`` does, with a canary added.
"""

import time

import pytest

from controlplane.feed import record_write
from controlplane.names import host_id
from controlplane.records import route_record
from deployments.feed import route_row
from endpoints.traffic import traffic_totals
from gateway.split import bucket, choose
from tests.factories import make_user
from tests.gatewayrig import deploy
from tests.helpers import expect

CANARY_PREFIX = "/canary-prefix"
VERSION = "canary-v2"


def canary(weight: int, *, sticky: bool = False, upstream: str = "http://canary.test", version: str = VERSION) -> dict:
    return {"upstream": upstream, "weight": weight, "sticky": sticky, "version": version}


# ---------------------------------------------------------------- the chooser (pure)
def test_no_canary_or_weight_zero_is_stable_and_weight_100_is_always_the_canary():
    never = lambda: pytest.fail("no draw without a split")  # noqa: E731
    assert choose({"id": 1, "upstream": "http://stable"}, None, "10.0.0.1", never) is None
    assert choose({"id": 1, "canary": None}, None, "10.0.0.1", never) is None
    for sticky in (False, True):
        zero, full = canary(0, sticky=sticky), canary(100, sticky=sticky)
        for key in range(200):
            assert choose({"id": 1, "canary": zero}, f"Bearer t{key}", "10.0.0.1", never) is None
            assert choose({"id": 1, "canary": full}, f"Bearer t{key}", "10.0.0.1", never) is full


def test_a_malformed_canary_is_no_canary():
    for bad in ({"upstream": "http://c", "weight": "50", "sticky": False, "version": "v"},
                {"upstream": "http://c", "weight": 101, "sticky": False, "version": "v"},
                {"upstream": "http://c", "weight": True, "sticky": False, "version": "v"},
                {"upstream": "", "weight": 100, "sticky": False, "version": "v"},
                {"upstream": "http://c", "weight": 100, "sticky": False, "version": "a:b"},
                {"upstream": "http://c", "weight": 100, "sticky": False},
                ["not", "a", "dict"]):
        assert choose({"id": 1, "canary": bad}, None, "10.0.0.1", lambda: 0.0) is None, bad


def test_non_sticky_draws_per_request_with_probability_weight_over_100():
    c = canary(30)
    assert choose({"id": 1, "canary": c}, None, "x", lambda: 0.2999) is c
    assert choose({"id": 1, "canary": c}, None, "x", lambda: 0.30) is None
    assert choose({"id": 1, "canary": c}, None, "x", lambda: 0.0) is c
    assert choose({"id": 1, "canary": c}, None, "x", lambda: 0.9999) is None


def test_sticky_callers_keep_their_side_and_a_higher_weight_only_moves_them_to_the_canary():
    keys = [f"Bearer token-{i}" for i in range(3000)]
    route_low, route_high = {"id": 7, "canary": canary(20, sticky=True)}, {"id": 7, "canary": canary(60, sticky=True)}
    low = {k for k in keys if choose(route_low, k, "10.0.0.1") is not None}
    high = {k for k in keys if choose(route_high, k, "10.0.0.1") is not None}
    assert low <= high  # nobody on the canary at 20 is back on stable at 60
    assert 0.16 * len(keys) < len(low) < 0.24 * len(keys), len(low)
    assert 0.55 * len(keys) < len(high) < 0.65 * len(keys), len(high)
    # Deterministic: the same caller, asked again, lands where it did (no draw involved).
    assert {k for k in keys if choose(route_low, k, "10.0.0.1", lambda: pytest.fail("drew")) is not None} == low
    # Every weight step is monotonic, for every caller.
    for k in keys[:300]:
        sides = [choose({"id": 7, "canary": canary(w, sticky=True)}, k, "10.0.0.1") is not None for w in range(101)]
        assert sides == sorted(sides), k  # False ... False True ... True
    # Without an Authorization header the client address is the caller key.
    addresses = [f"10.0.{i // 250}.{i % 250}" for i in range(1000)]
    by_address = {a for a in addresses if choose(route_high, None, a) is not None}
    assert by_address == {a for a in addresses if bucket(7, a) < 60}
    # The buckets of one caller differ between endpoints (one caller is not on every canary at once).
    assert sum(bucket(7, k) != bucket(8, k) for k in keys[:200]) > 150


# ---------------------------------------------------------------- through the gateway
def publish_canary(endpoint, spec: dict | None) -> None:
    """Publish ``endpoint``'s route record with ``"canary": spec`` (newer than any publication before)."""
    slug = endpoint.account.slug
    record = route_record(route_row(account_slug=slug, name=endpoint.name))
    record["canary"] = spec
    record_write("route", host_id(slug, endpoint.name), time.time_ns(), record)


def side(response) -> str:
    expect(response, 200)
    assert VERSION not in str(response.headers)  # callers never see a version
    return "canary" if response.json()["path"].startswith(CANARY_PREFIX + "/") else "stable"


def wait_for_side(gw, path: str, want: str, timeout: float = 5.0) -> None:
    """Until the gateway has the newest record: some request lands on ``want``."""
    deadline = time.monotonic() + timeout
    while side(gw.get(path)) != want:
        assert time.monotonic() < deadline, f"no request reached the {want} side within {timeout}s"
        time.sleep(0.05)



@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_weight_zero_serves_stable_and_weight_100_serves_the_canary(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice)
    canary_url = upstream.url + CANARY_PREFIX
    publish_canary(endpoint, canary(0, upstream=canary_url))
    gw = gateway()
    assert [side(gw.get("/alice/web/v1/ping?q=1")) for _ in range(30)] == ["stable"] * 30
    assert upstream.requests[-1][1:3] == ("/v1/ping", "q=1")

    publish_canary(endpoint, canary(100, upstream=canary_url))
    wait_for_side(gw, "/alice/web/v1/ping", "canary")
    assert [side(gw.get("/alice/web/v1/ping?q=2")) for _ in range(30)] == ["canary"] * 30
    assert upstream.requests[-1][1:3] == (CANARY_PREFIX + "/v1/ping", "q=2")  # path and query as for stable

    publish_canary(endpoint, None)  # the canary withdrawn: stable again
    wait_for_side(gw, "/alice/web/v1/ping", "stable")
    assert [side(gw.get("/alice/web/v1/ping")) for _ in range(30)] == ["stable"] * 30


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_non_sticky_split_and_its_counts(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice)
    publish_canary(endpoint, canary(30, upstream=upstream.url + CANARY_PREFIX))
    gw = gateway(GATEWAY_ACTIVITY_SECONDS="1")
    total = 400
    sides = [side(gw.get("/alice/web/v1/ping", token="same-caller")) for _ in range(total)]
    to_canary = sides.count("canary")
    # Binomial(400, 0.3): mean 120, sd ~9.2; 80..160 is more than 4 sd either way. Non-sticky: one caller
    # (the same token every time) is split too.
    assert 80 <= to_canary <= 160, to_canary

    # Counted: "" is every request, the canary version the canary's share again; stable = whole - canary.
    deadline = time.monotonic() + 10
    while True:
        whole, only_canary = traffic_totals(endpoint.pk), traffic_totals(endpoint.pk, version=VERSION)
        if (whole["requests"], only_canary["requests"]) == (total, to_canary) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert whole["requests"] == total and whole["by_class"]["2xx"] == total, whole
    assert only_canary["requests"] == to_canary and only_canary["by_class"]["2xx"] == to_canary, only_canary
    assert sum(only_canary["buckets"]) == to_canary and only_canary["pending"] == 0
    assert whole["requests"] - only_canary["requests"] == sides.count("stable")
    assert all(w >= c for w, c in zip(whole["buckets"], only_canary["buckets"], strict=True))
    assert traffic_totals(endpoint.pk, version="other")["requests"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_sticky_callers_always_land_on_their_side(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice)
    publish_canary(endpoint, canary(50, sticky=True, upstream=upstream.url + CANARY_PREFIX))
    gw = gateway()
    # Callers on each side, by the bucket of their Authorization header value.
    tokens = [f"token-{i}" for i in range(200)]
    on_canary = [t for t in tokens if bucket(endpoint.pk, f"Bearer {t}") < 50][:4]
    on_stable = [t for t in tokens if bucket(endpoint.pk, f"Bearer {t}") >= 50][:4]
    assert len(on_canary) == len(on_stable) == 4
    for token in on_canary + on_stable:
        sides = {side(gw.get("/alice/web/v1/ping", token=token)) for _ in range(50)}
        assert sides == {"canary" if token in on_canary else "stable"}, token
    # No Authorization header: the client address decides, the same way every time.
    anonymous = {side(gw.get("/alice/web/v1/ping")) for _ in range(50)}
    assert anonymous == {"canary" if bucket(endpoint.pk, "127.0.0.1") < 50 else "stable"}
