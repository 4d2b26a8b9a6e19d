"""Tenant isolation at the gateway (a real ``python -m gateway`` process, real Redis): each test is named
after the item of the isolation issue it proves.
"""

import asyncio
import base64
import hashlib
import json
import socket
import time

import aiohttp
import pytest
import redis
import requests
from django.conf import settings

from controlplane import records
from controlplane.names import host_id
from endpoints import services
from tests.factories import make_token, make_user
from tests.gatewayrig import deploy, error_of, host
from tests.helpers import expect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ZERO_SCALING = {"compute": {"scaling": {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 15}}}


def raw(gw, request: bytes, timeout: float = 5) -> bytes:
    """Send ``request`` as bytes on a fresh connection and read until the gateway closes it."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def gateway_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(f"{settings.GATEWAY_REDIS_PREFIX}*"))


def test_item_3a_unsigned_and_badly_signed_records_and_feed_messages_are_ignored(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    token = make_token(alice)
    victim = deploy(alice.personal_account, "secret", "protected", alice)
    gw = gateway()
    expect(gw.get("/alice/secret/x", token=token), 200)  # genuine records are trusted
    client = redis_client()
    prefix, now = settings.GATEWAY_REDIS_PREFIX, time.time_ns()
    forged = {"user": alice.pk, "expires": None, "revoked": False}

    # Token records for secrets nobody issued: one unsigned, one signed with another key.
    unsigned_secret, wrong_key_secret = "cpt_forged_unsigned", "cpt_forged_wrong_key"
    digest = hashlib.sha256(unsigned_secret.encode()).hexdigest()
    client.set(f"{prefix}token:{digest}", json.dumps({"v": now, "record": forged}))
    assert error_of(gw.get("/alice/secret/x", token=unsigned_secret)) == (401, "invalid_token")
    keys, args = records.cas_args(prefix, "token", hashlib.sha256(wrong_key_secret.encode()).hexdigest(), now,
                                  forged, 600, False, signing_key=b"not-the-record-key")
    client.eval(records.CAS_SET, len(keys), *keys, *args)
    assert error_of(gw.get("/alice/secret/x", token=wrong_key_secret)) == (401, "invalid_token")
    expect(gw.get("/alice/secret/x", token=token), 200)

    # Feed messages opening the protected endpoint to anyone: unsigned, and signed with another key.
    route_name = f"route:{victim_host(victim)}"
    genuine = records.parse_stored(client.get(prefix + route_name), route_name,
                                   signing_key=settings.GATEWAY_RECORD_KEY.encode())[1]
    opened = {**genuine, "type": "public"}
    client.publish(prefix + records.FEED, f"{route_name} " + json.dumps({"v": time.time_ns(), "record": opened}))
    keys, args = records.cas_args(prefix, "route", victim_host(victim), time.time_ns(), opened, 600, True,
                                  signing_key=b"not-the-record-key")
    client.eval(records.CAS_SET, len(keys), *keys, *args)  # stored and broadcast, with the wrong signature
    time.sleep(0.5)
    assert error_of(gw.get("/alice/secret/x")) == (401, "unauthenticated")

    # A gateway that starts now finds only the forged route in Redis: it goes to the database instead.
    fresh = gateway()
    assert error_of(fresh.get("/alice/secret/x")) == (401, "unauthenticated")
    expect(fresh.get("/alice/secret/x", token=token), 200)
    assert gw.metric("gateway_records_rejected_total", source="redis") == 2
    assert gw.metric("gateway_records_rejected_total", source="feed") == 2
    assert fresh.metric("gateway_records_rejected_total", source="redis") == 1
    client.close()


def test_item_3a_production_always_has_a_record_key_of_its_own():
    import os
    import subprocess
    import sys

    from tests.gatewayrig import REPO

    def settings_in_production(**env: str) -> subprocess.CompletedProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GATEWAY_", "SECRETS_"))}
        full |= {"DJANGO_DEBUG": "false", **env}
        code = "from controlplane import settings as s; print(s.GATEWAY_RECORD_KEY)"
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full, capture_output=True, text=True,
                              timeout=60)

    keys = {"DJANGO_SECRET_KEY": "k" * 50, "SECRETS_ENCRYPTION_KEY": "e" * 50}
    assert settings_in_production().returncode != 0  # no secret at all: refuses to start
    derived = settings_in_production(**keys)
    assert derived.returncode == 0, derived.stderr
    assert len(derived.stdout.strip()) == 64 and "k" * 50 not in derived.stdout  # derived, not the Django key
    assert settings_in_production(**(keys | {"DJANGO_SECRET_KEY": "j" * 50})).stdout != derived.stdout
    short = settings_in_production(**keys, GATEWAY_RECORD_KEY="short")
    assert short.returncode != 0 and "GATEWAY_RECORD_KEY" in short.stderr and "short" not in short.stderr


def victim_host(endpoint) -> str:
    return host_id(endpoint.account.slug, endpoint.name)


def test_item_8_metrics_are_served_only_for_the_metrics_token(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice)
    closed = gateway(GATEWAY_METRICS_TOKEN="")  # none configured: never served
    for path in ("/_gateway/metrics", "/metrics"):
        expect(closed.get(path), 404, path)
        expect(closed.get(path, headers={"Authorization": "Bearer "}), 404, path)

    gw = gateway(GATEWAY_METRICS_TOKEN="scrape-token-1")
    expect(gw.get("/alice/web/x"), 200)
    for path in ("/_gateway/metrics", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer scrape-token-2"}, {"Authorization": "Basic c2NyYXBl"}):
            r = gw.get(path, headers=headers)
            assert error_of(r) == (401, "unauthenticated"), (path, headers)
            assert "ep-web" not in r.text
        r = gw.get(path, headers={"Authorization": "Bearer scrape-token-1"})
        assert r.status_code == 200 and 'endpoint="ep-web"' in r.text, r.content
    assert "scrape-token-1" not in gw.log()


def test_item_9_unknown_tokens_and_hosts_are_remembered_and_misses_are_limited_per_client(gateway, gateway_cluster,
                                                                                          upstream):
    alice = make_user("alice")
    token = make_token(alice)
    deploy(alice.personal_account, "svc", "protected", alice)
    # A long absent-answer TTL: an answer that went away quickly below was cleared by the feed.
    gw = gateway(GATEWAY_MISS_BURST="25", GATEWAY_MISS_RATE="1", GATEWAY_NEGATIVE_TTL_SECONDS="60")
    expect(gw.get("/alice/svc/x", token=token), 200)
    queries = gw.metric("gateway_db_queries_total")
    nowhere = "nothere-0123456789abcdef.endpoints.test"
    for _ in range(10):  # the same unknown token and host, again and again: read once
        assert error_of(gw.get("/alice/svc/x", token="cpt_unknown")) == (401, "invalid_token")
        assert error_of(gw.get("/x", host=nowhere)) == (404, "endpoint_not_found")
    assert gw.metric("gateway_db_queries_total") == queries + 2

    client = redis_client()
    before = gateway_keys(client)
    for i in range(5):  # random tokens leave nothing behind in Redis
        expect(gw.get("/alice/svc/x", token=f"cpt_random_{i}"), 401)
    assert gateway_keys(client) == before
    client.close()

    # An endpoint created after its host was looked up is served as soon as its route is published.
    later = f"{host_id('alice', 'later')}.endpoints.test"
    expect(gw.get("/x", host=later), 404)
    deploy(alice.personal_account, "later", "public", alice)
    deadline = time.monotonic() + 5
    while gw.get("/x", host=later).status_code != 200:
        assert time.monotonic() < deadline, "the absent answer outlived the route's publication"
        time.sleep(0.05)

    # About 14 misses are left (plus one a second): 60 more random tokens overdraw the budget.
    answers = [gw.get("/alice/svc/x", token=f"cpt_more_{i}") for i in range(60)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused and {r.status_code for r in answers} == {401, 429}
    assert error_of(refused[-1]) == (429, "too_many_lookups") and int(refused[-1].headers["Retry-After"]) >= 1
    assert gw.metric("gateway_misses_refused_total") == len(refused)
    # What the client's address already knows is answered from memory, whatever its budget.
    expect(gw.get("/alice/svc/x", token=token), 200)
    assert error_of(gw.get("/alice/svc/x", token="cpt_unknown")) == (401, "invalid_token")


def test_item_14_request_headers_sent_too_slowly_are_cut(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice)
    gw = gateway(GATEWAY_HEADER_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=0.3) as conn:
        conn.sendall(b"GET /alice/web/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started, closed_after = time.monotonic(), None
        while time.monotonic() - started < 5:
            try:
                conn.sendall(b"X-Slow: 1\r\n")  # a header line now and then, never the blank line
                if conn.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and closed_after < 2.5, closed_after
    assert gw.metric("gateway_header_timeouts_total") == 1

    # An idle keep-alive connection is not a slow request: it outlives the header deadline.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as conn:
        request = b"GET /alice/web/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for _ in range(2):
            conn.sendall(request)
            assert conn.recv(65536).startswith(b"HTTP/1.1 200"), "a request on the kept-alive connection failed"
            time.sleep(1.5)


def test_item_14_one_client_address_cannot_fill_a_hold_queue(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice, **ZERO_SCALING)
    services.endpoint_scale_to_zero(account=alice.personal_account, name="web", actor=alice)
    # One trusted proxy in front: X-Forwarded-For names the client (here, two of them).
    gw = gateway(GATEWAY_CLIENT_HOLD_LIMIT="3", GATEWAY_TRUSTED_PROXIES="1")

    async def calls() -> tuple[list, list]:
        async with aiohttp.ClientSession() as session:
            async def one(address: str) -> tuple[int, str]:
                headers = {"X-Forwarded-For": address, "X-Scale-Up-Timeout": "2"}
                async with session.get(f"{gw.url}/alice/web/x", headers=headers) as r:
                    return error_of_text(r.status, await r.text())

            flood = [one("203.0.113.7") for _ in range(6)]
            other = [one("198.51.100.9") for _ in range(2)]
            results = await asyncio.gather(*flood, *other)
            return sorted(results[:6]), results[6:]

    flood, other = asyncio.run(calls())
    assert flood == [(429, "too_many_waiting")] * 3 + [(503, "endpoint_waking")] * 3
    assert other == [(503, "endpoint_waking")] * 2  # held, not refused: the flood was someone else's


def error_of_text(status: int, text: str) -> tuple[int, str]:
    return status, json.loads(text)["code"]


def test_item_16_our_tokens_are_stripped_from_every_credential_header(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    ours = make_token(alice)
    deploy(alice.personal_account, "pub", "public", alice)
    deploy(alice.personal_account, "prot", "protected", alice)
    gw = gateway()
    basic = base64.b64encode(f"alice:{ours}".encode()).decode()
    credentials = (f"Authorization: token {ours}\r\nAuthorization: Bearer model-key\r\n"
                   f"Authorization: Basic {basic}\r\nAuthorization: {ours}\r\n"
                   f"X-Api-Key: {ours}\r\nX-Api-Key: model-api-key\r\n")
    answer = raw(gw, f"GET /alice/pub/v1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n{credentials}Connection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    seen = json.loads(answer.partition(b"\r\n\r\n")[2])["headers"]
    assert seen["Authorization"] == "Bearer model-key" and seen["X-Api-Key"] == "model-api-key"
    assert ours[:12] not in json.dumps(seen)

    r = gw.get("/alice/prot/v1/x", token=ours, headers={"X-Api-Key": ours})  # protected: admitted, never passed on
    assert r.status_code == 200 and ours[:12] not in json.dumps(r.json()["headers"]), r.content


def test_item_22_domains_forwarding_headers_asterisk_and_logged_queries(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice)
    gw = gateway()
    registered = host(endpoint)  # <host id>.endpoints.test, the cluster's ingress domain
    assert gw.get("/v1/x", host=registered).json()["path"] == "/v1/x"
    assert gw.get("/v1/x", host=f"{registered}:8443").json()["path"] == "/v1/x"
    for foreign in (f"{victim_host(endpoint)}.attacker.example", victim_host(endpoint)):
        assert error_of(gw.get("/v1/x", host=foreign)) == (404, "endpoint_not_found"), foreign
    assert gw.get("/alice/web/v1/x", host="endpoints.test").json()["path"] == "/v1/x"  # path style stays

    spoofed = {"X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "bank.example",
               "X-Forwarded-Prefix": "/admin", "X-Forwarded-Port": "443", "Forwarded": "for=192.0.2.1",
               "X-Real-IP": "192.0.2.1"}
    sent = {k.lower(): v for k, v in gw.get("/alice/web/v1/x", headers=spoofed).json()["headers"].items()}
    assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == f"127.0.0.1:{gw.port}" and sent["x-forwarded-prefix"] == "/alice/web"
    assert not {"x-forwarded-port", "forwarded", "x-real-ip"} & set(sent)

    for target in (registered, "127.0.0.1"):
        answer = raw(gw, f"OPTIONS * HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]

    with pytest.raises(requests.RequestException):  # the upstream breaks mid-body: logged by the gateway
        gw.get("/alice/web/broken?api_key=query-secret-1")
    deadline = time.monotonic() + 5
    while "gateway.upstream_broke" not in gw.log():
        assert time.monotonic() < deadline, "the broken upstream was not logged"
        time.sleep(0.05)
    assert "query-secret-1" not in gw.log()


def test_item_22_path_style_is_served_only_on_the_clusters_domain_or_a_configured_host(gateway, gateway_cluster,
                                                                                      upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "web", "public", alice)
    gw = gateway(GATEWAY_PATH_HOSTS="gateway.internal,127.0.0.1")
    # The endpoint's cluster ingress domain (endpoints.test) and the configured Hosts, any case, any port.
    for served in ("endpoints.test", "ENDPOINTS.test:8443", "gateway.internal", "Gateway.Internal:8080",
                   f"127.0.0.1:{gw.port}"):
        assert gw.get("/alice/web/v1/x", host=served).json()["path"] == "/v1/x", served
    for foreign in ("attacker.example", "endpoints.test.attacker.example", "test", "internal", "10.0.0.7",
                    "localhost", f"localhost:{gw.port}"):
        assert error_of(gw.get("/alice/web/v1/x", host=foreign)) == (404, "endpoint_not_found"), foreign
    # The gateway's own routes and probes answer on any Host (a pod IP, a scrape).
    for any_host in ("attacker.example", "10.0.0.7"):
        assert gw.get("/healthz", host=any_host).status_code == 200
        assert gw.get("/_gateway/readyz", host=any_host).status_code == 200

    # Nothing configured: the cluster's domain only; the address the gateway listens on serves nothing.
    strict = gateway(GATEWAY_PATH_HOSTS="")
    assert error_of(strict.get("/alice/web/v1/x")) == (404, "endpoint_not_found")
    assert strict.get("/alice/web/v1/x", host="endpoints.test:80").json()["path"] == "/v1/x"


@pytest.mark.parametrize("hosts", ["*.example.com", "gateway.internal/x", "bad host"])
def test_item_22_a_path_host_that_is_not_a_host_name_is_refused_at_startup(hosts):
    import os
    import subprocess
    import sys

    from tests.gatewayrig import REPO

    env = {**os.environ, "GATEWAY_PATH_HOSTS": f"127.0.0.1,{hosts}"}
    result = subprocess.run([sys.executable, "-c", "import controlplane.settings"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "GATEWAY_PATH_HOSTS" in result.stderr
