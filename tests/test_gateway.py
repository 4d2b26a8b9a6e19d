"""The gateway as a real process (``python -m gateway``) in front of a stub upstream: who gets in, what is
forwarded, streaming both ways, the route feed's latency, and the database staying out of warm requests.
"""

import asyncio
import os
import time

import aiohttp
import pytest
import redis
from django.conf import settings

from tests.factories import make_org, make_token, make_user
from tests.gatewayrig import deploy, error_of, host
from tests.helpers import expect, user_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def wait_for_status(gw, path, expected: int, *, timeout: float = 5.0, **kwargs) -> float:
    """Seconds until the gateway answers ``expected``; fails after ``timeout``."""
    start = time.monotonic()
    while True:
        status = gw.get(path, **kwargs).status_code
        if status == expected:
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"still {status} after {timeout}s"
        time.sleep(0.05)


# ---------------------------------------------------------------- access
def test_access_matrix_by_caller_and_type(gateway, gateway_cluster, upstream):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    acme = make_org("acme", members={alice: "admin", bob: "read"})
    tokens = {"alice": make_token(alice), "bob (org reader)": make_token(bob, role="read"),
              "carol (other user)": make_token(carol), "anonymous": None,
              "revoked": make_token(alice, revoked=True), "expired": make_token(alice, expired=True)}
    endpoints = {}
    for type_ in ("public", "protected", "authenticated", "private"):
        endpoints[("personal", type_)] = deploy(alice.personal_account, f"p-{type_}", type_, alice)
        endpoints[("org", type_)] = deploy(acme, f"o-{type_}", type_, alice)
    gw = gateway()

    allowed = {("personal", "alice"), ("org", "alice"), ("org", "bob (org reader)")}
    expected, actual = {}, {}
    for (owner, type_), endpoint in endpoints.items():
        for caller, token in tokens.items():
            if type_ == "private":
                want = (404, "endpoint_not_found")
            elif type_ == "public" or (owner, caller) in allowed:
                want = (200, "")
            elif caller == "anonymous":
                want = (401, "unauthenticated")
            elif caller in ("revoked", "expired"):
                want = (401, "invalid_token")
            else:
                want = (403, "forbidden")
            r = gw.get("/v1/ping", host=host(endpoint), token=token)
            expected[(owner, type_, caller)] = want
            actual[(owner, type_, caller)] = (200, "") if r.status_code == 200 else error_of(r)
    assert actual == expected
    # Path style gives the same answers.
    r = gw.get("/acme/o-protected/v1/ping", token=tokens["bob (org reader)"])
    assert r.status_code == 200, r.text
    expect(gw.get("/acme/o-protected/v1/ping", token=tokens["carol (other user)"]), 403)
    expect(gw.get("/acme/o-private/v1/ping", token=tokens["alice"]), 404)
    assert gw.get("/acme/nothing-here/x").json() == {"error": "No endpoint at this address",
                                                      "code": "endpoint_not_found"}


def test_forwarding_strips_prefix_hop_by_hop_headers_and_protected_tokens(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    token = make_token(alice)
    protected = deploy(alice.personal_account, "prot", "protected", alice)
    public = deploy(alice.personal_account, "pub", "public", alice)
    gw = gateway()
    hop = {"Connection": "keep-alive, X-Hop-Custom", "X-Hop-Custom": "1", "Keep-Alive": "timeout=5",
           "TE": "trailers", "Proxy-Authorization": "Basic eA==", "X-End-To-End": "kept",
           "X-Scale-Up-Timeout": "30"}

    r = gw.get("/alice/prot/v1/models/a%2Fb?limit=2&q=a%20b", token=token, headers=hop)
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["raw_path"] == "/v1/models/a%2Fb" and seen["query"] == "limit=2&q=a%20b"
    sent = {k.lower(): v for k, v in seen["headers"].items()}
    assert "authorization" not in sent  # protected: the caller's token stays at the gateway
    for name in ("x-hop-custom", "keep-alive", "te", "proxy-authorization", "x-scale-up-timeout"):
        assert name not in sent, name
    assert sent["x-end-to-end"] == "kept"
    assert sent["x-forwarded-prefix"] == "/alice/prot"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert r.headers["X-Upstream"] == "stub" and "Proxy-Authenticate" not in r.headers

    r = gw.get("/v1/x", host=host(protected), token=token)
    assert r.json()["path"] == "/v1/x" and "x-forwarded-prefix" not in {k.lower() for k in r.json()["headers"]}

    r = gw.get("/v1/x", host=host(public), headers={"Authorization": "Bearer for-the-model"})
    assert r.json()["headers"]["Authorization"] == "Bearer for-the-model"  # public: the model's own business
    r = gw.get("/v1/x", host=host(public), token=token)  # what the HF client sends by default
    assert "authorization" not in {k.lower() for k in r.json()["headers"]}  # never our API token

    r = gw.get("/alice/prot/v1/post", method="POST", token=token, data=b'{"inputs": "hi"}',
               headers={"Content-Type": "application/json"})
    assert r.json()["method"] == "POST" and r.json()["body"] == '{"inputs": "hi"}'


def test_expect_100_continue_is_answered_after_admission(gateway, gateway_cluster, upstream):
    import socket

    alice = make_user("alice")
    token = make_token(alice)
    deploy(alice.personal_account, "prot", "protected", alice)
    gw = gateway()

    def ask(headers: str) -> bytes:
        with socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])), timeout=5) as conn:
            conn.sendall(f"POST /alice/prot/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                         f"Expect: 100-continue\r\n{headers}\r\n".encode())
            first = conn.recv(4096)
            if first.startswith(b"HTTP/1.1 100"):
                conn.sendall(b"hello")
                first += conn.recv(4096)
            return first

    answer = ask(f"Authorization: Bearer {token}\r\n")
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"), answer[:200]
    assert b'"bytes": 5' in answer
    refused = ask("")  # no token: refused before any body is sent
    assert refused.startswith(b"HTTP/1.1 401"), refused[:200]


def test_gateway_routes_answer_on_reserved_prefix_and_on_non_endpoint_hosts(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    endpoint = deploy(alice.personal_account, "web", "public", alice)
    gw = gateway()
    assert gw.get("/_gateway/healthz", host=host(endpoint)).json() == {"status": "ok"}
    assert gw.get("/healthz").json() == {"status": "ok"}
    assert gw.get("/readyz").json()["status"] == "ok"
    assert "gateway_requests_total" in gw.metrics_text("/metrics")
    # On an endpoint's host, /healthz is the endpoint's own.
    assert gw.get("/healthz", host=host(endpoint)).json()["path"] == "/healthz"


# ---------------------------------------------------------------- streaming
def test_sse_events_arrive_before_the_upstream_finishes(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "chat", "public", alice)
    gw = gateway()

    async def read() -> list[tuple[float, bytes]]:
        events = []
        async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/alice/chat/sse") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            async for chunk in r.content.iter_any():
                events.append((time.monotonic(), chunk))
                if len(events) == 1:
                    assert not upstream.release_sse.is_set()  # the upstream is still mid-response
                    upstream.release_sse.set()
        return events

    events = asyncio.run(read())
    assert b"".join(c for _, c in events) == b"data: first\n\ndata: last\n\n"
    assert events[0][1] == b"data: first\n\n"


def test_broken_streams_are_cut_not_passed_off_as_complete(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "chat", "public", alice)
    gw = gateway()

    async def client_leaves_mid_stream() -> None:
        async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/alice/chat/sse") as r:
            assert await r.content.readany() == b"data: first\n\n"
        # The client is gone; the upstream is still in the middle of its response.

    async def upstream_breaks() -> type:
        async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/alice/chat/broken") as r:
            try:
                await r.read()
            except aiohttp.ClientPayloadError as exc:
                return type(exc)
        return type(None)

    asyncio.run(client_leaves_mid_stream())
    upstream.release_sse.set()
    assert asyncio.run(upstream_breaks()) is aiohttp.ClientPayloadError  # the client sees the break
    time.sleep(0.3)
    assert gw.metric("gateway_pending_requests", namespace="ie-alice", endpoint="ep-chat") == 0
    assert gw.metric("gateway_requests_total", namespace="ie-alice", endpoint="ep-chat", code="2xx") == 1
    assert gw.metric("gateway_requests_total", namespace="ie-alice", endpoint="ep-chat", code="4xx") == 1  # gone
    expect(gw.get("/alice/chat/ok"), 200)
    assert "Error handling request" not in gw.log()


def test_request_and_response_bodies_stream_without_buffering(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    deploy(alice.personal_account, "files", "public", alice)
    gw = gateway()
    size = 32 * 1024 * 1024
    chunk = b"y" * (1024 * 1024)

    async def upload():
        async def body():
            yield chunk
            # The rest is only sent once the upstream has received the first megabyte: a gateway that
            # buffered the request body would wait for the end and this would time out.
            deadline = time.monotonic() + 10
            while upstream.received < len(chunk):
                assert time.monotonic() < deadline, "the first chunk never reached the upstream"
                await asyncio.sleep(0.01)
            for _ in range(size // len(chunk) - 1):
                yield chunk

        async with aiohttp.ClientSession() as session, session.post(f"{gw.url}/alice/files/upload",
                                                                    data=body()) as r:
            return r.status, await r.json()

    status, body = asyncio.run(upload())
    assert status == 200 and body["bytes"] == size

    async def download():
        async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/alice/files/big?bytes={size}") as r:
            total = 0
            async for piece in r.content.iter_chunked(1 << 20):
                total += len(piece)
            return r.headers.get("Content-Length"), total

    assert asyncio.run(download()) == (str(size), size)


# ---------------------------------------------------------------- the feed
def test_revocation_membership_and_type_changes_apply_within_five_seconds(gateway, gateway_cluster, upstream):
    alice, bob = make_user("alice"), make_user("bob")
    acme = make_org("acme", members={alice: "admin", bob: "read"})
    alice_token, bob_token = make_token(alice), make_token(bob)
    deploy(acme, "svc", "protected", alice)
    gw = gateway()
    expect(gw.get("/acme/svc/x", token=alice_token), 200)
    expect(gw.get("/acme/svc/x", token=bob_token), 200)
    expect(gw.get("/acme/svc/x"), 401)

    revoker = user_api(alice)
    token_id = next(t["id"] for t in revoker.get("/v2/tokens").json()["items"] if t["prefix"] == alice_token[:10])
    expect(revoker.delete(f"/v2/tokens/{token_id}"), 200)
    assert wait_for_status(gw, "/acme/svc/x", 401, token=alice_token) < 5

    from controlplane.services import membership_remove

    membership_remove(account=acme, user=bob)
    assert wait_for_status(gw, "/acme/svc/x", 403, token=bob_token) < 5

    carol = make_user("carol")
    from controlplane.services import membership_set, user_set_active

    membership_set(account=acme, user=carol, role="read")
    carol_token = make_token(carol)
    assert wait_for_status(gw, "/acme/svc/x", 200, token=carol_token) < 5
    user_set_active(user=carol, active=False)
    assert wait_for_status(gw, "/acme/svc/x", 401, token=carol_token) < 5  # a deactivated user is locked out

    r = revoker.put("/v2/endpoint/acme/svc", {"type": "public"}, format="json")
    assert r.status_code == 200, r.json()
    assert wait_for_status(gw, "/acme/svc/x", 200) < 5


def test_warm_requests_run_no_database_query(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    token = make_token(alice)
    endpoint = deploy(alice.personal_account, "warm", "protected", alice)
    # Nothing in Redis: the first request must read the database (proving the counter counts).
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{settings.GATEWAY_REDIS_PREFIX}*"):
        client.delete(key)
    gw = gateway()
    assert gw.metric("gateway_db_queries_total") == 0
    expect(gw.get("/v1/a", host=host(endpoint), token=token), 200)
    cold = gw.metric("gateway_db_queries_total")
    assert cold >= 2  # the route and the token
    for _ in range(50):
        expect(gw.get("/v1/a", host=host(endpoint), token=token), 200)
    expect(gw.get("/alice/warm/v1/b", token=token), 200)
    assert gw.metric("gateway_db_queries_total") == cold
    # A second gateway finds the first one's reads in Redis: no database query even when cold.
    other = gateway()
    expect(other.get("/v1/a", host=host(endpoint), token=token), 200)
    assert other.metric("gateway_db_queries_total") == 0
    client.close()


def test_redis_outage_serves_fresh_memory_and_refuses_the_unverifiable(gateway, gateway_cluster, upstream, settings):
    from urllib.parse import urlparse

    from tests.gatewayrig import Relay

    alice = make_user("alice")
    known, unknown = make_token(alice), make_token(alice)
    deploy(alice.personal_account, "svc", "protected", alice)
    real_redis_url = settings.REDIS_URL
    target = urlparse(real_redis_url)
    relay = Relay(target.hostname, target.port or 6379)
    try:
        gw = gateway(redis_url=f"redis://127.0.0.1:{relay.port}{target.path}", GATEWAY_STALE_SECONDS="3")
        expect(gw.get("/alice/svc/x", token=known), 200)
        relay.cut()
        time.sleep(0.5)
        expect(gw.get("/alice/svc/x", token=known), 200)  # remembered, still fresh
        r = gw.get("/alice/svc/x", token=unknown)  # never seen: cannot be checked without Redis
        assert error_of(r) == (503, "gateway_unavailable") and r.headers["Retry-After"]
        expect(gw.get("/readyz"), 200)  # stays in service for what it can verify
        # Revoked during the outage, and the publication is lost too (the web process cannot reach Redis).
        from controlplane.feed import _client
        from controlplane.services import token_revoke

        settings.REDIS_URL = "redis://127.0.0.1:1/0"
        _client.cache_clear()
        token_revoke(user=alice, token_id=alice.api_tokens.get(prefix=known[:10]).pk)
        settings.REDIS_URL = real_redis_url
        _client.cache_clear()
        time.sleep(3)
        assert error_of(gw.get("/alice/svc/x", token=known)) == (503, "gateway_unavailable")
        relay.restore()
        assert wait_for_status(gw, "/alice/svc/x", 200, token=unknown, timeout=15) < 15
        # After the outage the gateway re-read what it remembered from the database, and healed Redis.
        assert error_of(gw.get("/alice/svc/x", token=known)) == (401, "invalid_token")
        stored = redis.Redis.from_url(real_redis_url).get(f"{settings.GATEWAY_REDIS_PREFIX}token:"
                                                          f"{alice.api_tokens.get(prefix=known[:10]).digest}")
        assert '"revoked":true' in stored.decode()
    finally:
        settings.REDIS_URL = real_redis_url
        relay.stop()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _answered_by(pid: int) -> float:
    """2xx answers one worker counted, read from its own file in the pod's multi-process metrics directory."""
    import json
    from pathlib import Path

    from prometheus_client.mmap_dict import MmapedDict

    env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    path = Path(env["PROMETHEUS_MULTIPROC_DIR"]) / f"counter_{pid}.db"
    total = 0.0
    for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
        _, name, labels, _ = json.loads(key)
        if name == "gateway_requests_total" and labels.get("code") == "2xx":
            total += value
    return total


def test_several_workers_share_the_port_and_one_metrics_page(gateway, gateway_cluster, upstream):
    alice = make_user("alice")
    token = make_token(alice)
    endpoint = deploy(alice.personal_account, "spread", "protected", alice)
    gw = gateway(GATEWAY_WORKERS="2")
    workers = _children(gw.proc.pid)
    assert len(workers) == 2
    sent = 60
    for _ in range(sent):  # a new connection each time: the kernel spreads connections, not requests
        expect(gw.get("/v1/a", host=host(endpoint), token=token, headers={"Connection": "close"}), 200)
    labels = {"namespace": "ie-alice", "endpoint": "ep-spread", "code": "2xx"}
    # Every worker served some, and whichever answers the scrape shows the pod's sum.
    per_worker = [_answered_by(pid) for pid in workers]
    assert all(n > 0 for n in per_worker) and sum(per_worker) == sent, per_worker
    for _ in range(6):
        assert gw.metric("gateway_requests_total", **labels) == sent
    assert gw.metric("gateway_pending_requests", namespace="ie-alice", endpoint="ep-spread") == 0
    assert gw.metric("gateway_feed_connected") == 1
    gw.stop()
    assert gw.proc.returncode == 0, gw.log()
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}")  # reaped by the supervisor before it exited
