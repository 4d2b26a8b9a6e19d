"""Abuse limits: a per-caller rate limit, the request body size, and the count limits of a spec.

Each limit answers a clear 4xx in the error shape naming what was exceeded. The rate limit counts in
Redis (shared by every web process) and must never take the API down with it: with the cache stopped or
frozen, requests are allowed and the outage is logged. Rate-limit tests use a per-test key prefix (no
counter is shared with another test or run) and a per-day window, so a burst of a few requests cannot
straddle a window boundary.
"""

import json
import logging
import signal
import time
import uuid

import pytest

from controlplane import throttling
from endpoints.models import Endpoint
from tests.factories import endpoint_spec, make_user
from tests.hardening_fixtures import running_redis
from tests.helpers import api_client, expect, user_api

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def fresh_counters(settings, monkeypatch):
    """The shared cache with a key prefix of this test's own; the throttle's outage memory cleared."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
    monkeypatch.setattr(throttling, "_cache_down_until", 0.0)
    return settings


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["code"] == "rate_limited" and "Rate limit exceeded" in body["error"], body
    assert 1 <= int(response["Retry-After"]) <= 86400, response["Retry-After"]
    assert body["error"].endswith(f"retry in {response['Retry-After']} s")


# ---------------------------------------------------------------- rate limit
def test_each_token_has_its_own_limit_and_the_next_request_gets_429_with_retry_after(alice, fresh_counters):
    fresh_counters.API_RATE_LIMIT = "3/day"
    first, second = user_api(alice), user_api(alice)
    for _ in range(3):
        expect(first.get("/v2/endpoint/alice"), 200)
    assert_throttled(first.get("/v2/endpoint/alice"))
    assert_throttled(first.post("/v2/endpoint/alice", endpoint_spec(), format="json"))
    assert not Endpoint.objects.exists()  # refused before the service ran
    # Another token of the same user counts separately.
    expect(second.get("/api/whoami-v2"), 200)


def test_sessions_count_per_user_and_anonymous_callers_per_address(alice, fresh_counters):
    fresh_counters.API_RATE_LIMIT = "2/day"
    session = api_client(session_user=alice)
    for _ in range(2):
        expect(session.get("/v2/tokens"), 200)
    assert_throttled(session.get("/v2/tokens"))

    # The schema is public: anonymous callers are counted by address. X-Forwarded-For is not trusted
    # (API_NUM_PROXIES=0), so a caller cannot reset its count by naming another address.
    for _ in range(2):
        expect(api_client().get("/api/schema/"), 200)
    throttled = api_client().get("/api/schema/", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert throttled["Content-Type"] == "application/json"  # errors are JSON even where the view renders YAML
    assert_throttled(throttled)
    expect(api_client(REMOTE_ADDR="198.51.100.7").get("/api/schema/"), 200)


def test_a_stopped_or_frozen_cache_lets_requests_through_and_says_so(alice, fresh_counters, tmp_path, caplog):
    fresh_counters.API_RATE_LIMIT = "2/day"
    api = user_api(alice)
    with running_redis(tmp_path) as cache_redis:
        fresh_counters.CACHES = {"default": {**fresh_counters.CACHES["default"], "LOCATION": cache_redis.url()}}
        assert [api.get("/v2/tokens").status_code for _ in range(3)] == [200, 200, 429]

        cache_redis.stop()
        started = time.monotonic()
        assert [api.get("/v2/tokens").status_code for _ in range(5)] == [200] * 5
        assert time.monotonic() - started < 1.0
        outages = [r for r in caplog.records if r.getMessage().startswith("api.throttle_unavailable")]
        assert len(outages) == 1 and outages[0].levelno == logging.WARNING, outages  # once, not per request

        cache_redis.start()  # empty again; counting resumes once the outage memory lapses
        throttling._cache_down_until = 0.0
        assert [api.get("/v2/tokens").status_code for _ in range(3)] == [200, 200, 429]

        cache_redis.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        throttling._cache_down_until = 0.0
        try:
            started = time.monotonic()
            expect(api.get("/v2/tokens"), 200)  # pays the 1 s socket timeout once
            first = time.monotonic() - started
            started = time.monotonic()
            assert [api.get("/v2/tokens").status_code for _ in range(5)] == [200] * 5
            rest = time.monotonic() - started
        finally:
            cache_redis.process.send_signal(signal.SIGCONT)
        assert first < 2.5 and rest < 0.5, (first, rest)


def test_the_limit_is_read_from_the_environment_format():
    assert throttling.parse_rate("600/min") == (600, 60)
    assert throttling.parse_rate("20/s") == (20, 1)
    assert throttling.parse_rate("off") is None
    with pytest.raises(ValueError, match="600/min"):
        throttling.parse_rate("600 per minute")


# ---------------------------------------------------------------- body size
@pytest.mark.parametrize("method,path", [("post", "/v2/endpoint/alice"), ("put", "/v2/endpoint/alice/my-endpoint"),
                                         ("post", "/v2/tokens"), ("post", "/v2/quotas/alice/requests")])
def test_a_body_over_the_limit_is_413_whatever_it_holds(alice, settings, method, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096  # API_MAX_BODY_BYTES
    api = user_api(alice)
    body = {**endpoint_spec(), "ignoredUnknownKey": "x" * 5000}  # unknown keys are ignored, not exempt
    r = getattr(api, method)(path, body, format="json")
    assert r.status_code == 413, r.content
    assert r.json() == {"error": "Request body too large; the limit is 4096 bytes", "code": "body_too_large"}
    assert not Endpoint.objects.exists()


def test_the_default_body_limit_refuses_300_kib(alice):
    r = user_api(alice).post("/v2/endpoint/alice", {**endpoint_spec(), "x": "y" * 300_000},
                                           format="json")
    assert r.status_code == 413 and r.json()["code"] == "body_too_large", r.content


# ---------------------------------------------------------------- count and size limits of a spec
def test_the_endpoint_count_limit_is_409_naming_the_limit(alice, settings):
    settings.MAX_ENDPOINTS_PER_ACCOUNT = 2
    api = user_api(alice)
    for name in ("one", "two"):
        expect(api.post("/v2/endpoint/alice", endpoint_spec(name), format="json"), 202)
    r = api.post("/v2/endpoint/alice", endpoint_spec("three"), format="json")
    assert r.status_code == 409, r.json()
    assert r.json() == {"error": "'alice' already has the maximum of 2 endpoints", "code": "endpoint_limit"}
    assert Endpoint.objects.count() == 2


many = {f"K{i}": "v" for i in range(101)}
SPEC_LIMITS = [
    ("model.env", {"model": {"env": many}}, "At most 100 entries"),
    ("model.secrets", {"model": {"secrets": many}}, "At most 100 entries"),
    ("model.image.custom.env", {"model": {"image": {"custom": {"url": "r.example/i:1", "env": many}}}},
     "At most 100 entries"),
    ("tags", {"tags": [f"t{i}" for i in range(65)]}, "no more than 64"),
    ("tags.0", {"tags": ["t" * 129]}, "no more than 128 characters"),
    ("model.command", {"model": {"command": ["x"] * 65}}, "no more than 64"),
    ("model.args", {"model": {"args": ["x"] * 257}}, "no more than 256"),
    ("model.env.BIG", {"model": {"env": {"BIG": "x" * 8193}}}, "no more than 8192 characters"),
    ("model.env", {"model": {"env": {"K" * 129: "v"}}}, "1 to 128 characters"),
    ("model.env", {"model": {"env": {"9LIVES": "v"}}}, "Invalid name"),
    ("model.secrets", {"model": {"secrets": {"A=B": "v"}}}, "Invalid name"),
    ("compute.scaling.maxReplica", {"compute": {"scaling": {"maxReplica": 101}}}, "less than or equal to 100"),
    ("name", {"name": "x" * 33}, "no more than 32 characters"),
]


@pytest.mark.parametrize("field,override,message", SPEC_LIMITS, ids=[case[0] + ":" + case[2] for case in SPEC_LIMITS])
def test_each_spec_limit_is_a_400_naming_the_field(alice, field, override, message):
    r = user_api(alice).post("/v2/endpoint/alice", endpoint_spec(**override), format="json")
    assert r.status_code == 400, r.json()
    body = r.json()
    assert body["code"] == "invalid" and field in body["fields"], body
    assert any(message in m for m in body["fields"][field]), body["fields"][field]
    assert field in body["error"]  # the one-line message names it too
    assert not Endpoint.objects.exists()


# ---------------------------------------------------------------- inputs Postgres cannot store (found by fuzzing)
def test_a_nul_in_the_tags_filter_is_a_400_naming_it(alice):
    r = user_api(alice).get("/v2/endpoint/alice", {"tags": "a\x00b"})
    assert r.status_code == 400 and "tags" in r.json()["fields"], r.content


@pytest.mark.parametrize("host", ["td|c", "evil.example"])
def test_a_host_django_refuses_is_a_json_400_not_an_html_page(alice, settings, host):
    settings.ALLOWED_HOSTS = ["testserver"]  # "td|c" is not a host name at all; evil.example is not allowed
    r = user_api(alice).get("/v2/endpoint/alice", HTTP_HOST=host)
    assert r.status_code == 400 and r["Content-Type"] == "application/json", (r["Content-Type"], r.content[:100])
    assert r.json() == {"error": "Malformed request", "code": "bad_request"}


def test_a_nul_in_a_path_is_a_404(alice):
    api = user_api(alice)
    for path in ("/v2/endpoint/ali%00ce", "/v2/endpoint/alice/ep%00", "/v2/quotas/%00"):
        r = api.get(path)
        assert r.status_code == 404 and r.json()["code"] == "not_found", (path, r.content)


def test_a_nul_or_lone_surrogate_in_image_options_is_a_400_naming_the_path(alice):
    api = user_api(alice)
    for value in ("a\x00b", "\ud800"):
        spec = endpoint_spec(model={"image": {"tgi": {"url": "r.example/tgi:3", "quantize": value}}})
        # As a client would send them: JSON escapes (\u0000, \ud800) in ASCII text.
        r = api.post("/v2/endpoint/alice", json.dumps(spec), content_type="application/json")
        assert r.status_code == 400, r.content
        assert "model.image.tgi.quantize" in r.json()["fields"], r.json()
