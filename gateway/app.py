"""The gateway's request handling: resolve the endpoint, admit the caller, hold if needed, proxy.

Addressing (checked in this order):

0. A request target that is not a path (``OPTIONS *``, ``CONNECT host:port``) -> 400.
1. ``/_gateway/healthz``, ``/_gateway/readyz``, ``/_gateway/metrics``: the gateway's own routes, on any
   Host (the ``/_gateway/`` prefix is reserved: endpoints never see it). Metrics need the metrics token.
2. Host style: ``Host: <host id>.<domain>`` (``controlplane.names.host_id``) -> that endpoint, path as sent,
   only when ``<domain>`` is the ingress domain of the endpoint's cluster (the route's ``domain``).
3. ``/healthz``, ``/readyz``, ``/metrics`` when the Host is not an endpoint's (probes and scrapes reach the
   pod by IP).
4. Path style: ``/<account>/<name>/<rest>`` -> that endpoint, upstream path ``/<rest>`` (prefix stripped,
   sent as ``X-Forwarded-Prefix``), only when the Host (lower-cased, with or without its port) is the
   ingress domain of the endpoint's cluster (the route's ``domain``) or one of ``GATEWAY_PATH_HOSTS``
   (``Config.path_hosts``); on any other Host the path names no endpoint (404 ``endpoint_not_found``).

Then: private -> 404 (never served here); access by type (``gateway.access``); paused -> 503;
scaled to zero or starting -> woken and held (``gateway.hold``); otherwise streamed (``gateway.proxy``) to
the stable upstream or, for the share ``gateway.split`` picks, the route's canary (never shown to callers).
"""

import asyncio
import functools
import hmac
import json
import logging
import time
from urllib.parse import unquote

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

from controlplane.errorcodes import Code
from controlplane.names import ACCOUNT_NAME_RE, ENDPOINT_NAME_RE, host_id, host_name_candidate
from controlplane.traffic import CLOSED, status_class

from . import metrics
from .access import authorize, bearer
from .activity import Activity
from .cache import Cache, TooManyMisses, Unverifiable
from .clients import MissBudget, client_address
from .config import Config
from .db import Database
from .errors import error
from .hold import ClientQueueFull, Holds, QueueFull, Waker, serving
from .proxy import UpstreamUnreachable, forward, request_headers
from .split import choose
from .traffic import Traffic
from .upstream import Upstream

log = logging.getLogger(__name__)

RESERVED = "/_gateway/"
OWN = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_QUEUE_FULL = 5
CLIENT_CLOSED = 499  # counted (as 4xx) for requests whose client hung up first, as nginx logs them
RETRY_WAKING = 10
SERVER_ERROR = status_class(500)
RETRY_MISSES = 1


# Path-style requests name (account, name) on every call: hash them once, not per request.
cached_host_id = functools.lru_cache(maxsize=65536)(host_id)


class Gateway:
    """One gateway process: ``start()``, then ``handle`` every request, then ``stop()``."""

    def __init__(self, config: Config):
        if not config.record_key:
            raise ValueError("the gateway needs the record key (GATEWAY_RECORD_KEY) to trust anything in Redis")
        self.config = config
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        c = self.config
        self.redis = aioredis.Redis.from_url(c.redis_url, socket_connect_timeout=1, socket_timeout=2)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=c.upstream_connections, limit_per_host=0, ttl_dns_cache=30,
                                           keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=c.upstream_connect_timeout,
                                          sock_read=c.upstream_read_timeout),
            # Bytes pass through as the endpoint encoded them; no cookie is ever shared between callers.
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        # Proxied requests go through this lean pool; the session above is for the wake-up health probes.
        self.upstream = Upstream(limit=c.upstream_connections, connect_timeout=c.upstream_connect_timeout,
                                 read_timeout=c.upstream_read_timeout, keepalive_timeout=30)
        self.db = Database(c.conninfo(), c.db_connections)
        self.holds = Holds(session=self.session, waker=Waker(c.broker_url, c.task_queue),
                           lookup=lambda host: self.cache.peek("route", host), limit=c.queue_limit,
                           client_limit=c.client_hold_limit, probe_interval=c.probe_interval,
                           resend=c.wake_resend_seconds)
        self.cache = Cache(redis=self.redis, db=self.db, prefix=c.prefix, signing_key=c.record_key,
                           max_age=c.cache_max_age, stale_seconds=c.stale_seconds, size=c.cache_size,
                           record_ttl=c.record_ttl, negative_ttl=c.negative_ttl, negative_size=c.negative_size,
                           misses=MissBudget(c.miss_rate, c.miss_burst), on_route=self.holds.notify)
        self.activity = Activity(self.redis, c.prefix, c.activity_seconds)
        self.traffic = Traffic(self.redis, c.prefix, c.activity_seconds)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.cache.run_feed()), loop.create_task(self.activity.run()),
                       loop.create_task(self.traffic.run())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.traffic.close()
        await self.upstream.close()
        await self.session.close()
        await self.db.close()
        await self.redis.aclose()

    # ---------------------------------------------------------------- entry point
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if not path.startswith("/"):
            return self._count(metrics.NO_ENDPOINT, error(400, Code.BAD_REQUEST, "The request target must be a path"))
        if path.startswith(RESERVED):
            return self._own(request, path[len(RESERVED) - 1:])
        client = client_address(request, self.config.trusted_proxies)
        try:
            target = await self._resolve(request, path, client)
            if target is None:
                if path in OWN:
                    return self._own(request, path)
                return self._count(metrics.NO_ENDPOINT, error(404, Code.ENDPOINT_NOT_FOUND, "No endpoint at this address"))
            route, upstream_path, prefix = target
            if route["type"] == "private":
                return self._count(metrics.NO_ENDPOINT, error(404, Code.ENDPOINT_NOT_FOUND, "No endpoint at this address"))
            m = metrics.for_endpoint(route["namespace"], route["object"])
            authorization = request.headers.get("Authorization")
            denied = await authorize(route, authorization, self.cache, client)
        except TooManyMisses:
            metrics.MISSES_REFUSED.inc()
            return self._count(metrics.NO_ENDPOINT, error(
                429, Code.TOO_MANY_LOOKUPS, "Too many requests for unknown tokens or endpoints from your address",
                retry_after=RETRY_MISSES))
        except Unverifiable as exc:
            metrics.UNVERIFIABLE.inc()
            log.warning("gateway.unverifiable error=%s", exc)
            return self._count(metrics.NO_ENDPOINT, error(
                503, Code.GATEWAY_UNAVAILABLE, "The gateway cannot verify this request right now; retry shortly",
                retry_after=RETRY_QUEUE_FULL))
        if denied is not None:
            return self._count(m, denied)
        # The canary's requests count twice: under "" (the whole endpoint) and under the canary's version.
        canary = choose(route, authorization, client)
        started = time.perf_counter()
        m.pending.inc()
        self.activity.begin(route["id"])
        counters = self.traffic.counters(route["id"])
        self.traffic.begin(counters)
        canary_counters = None
        if canary is not None:
            canary_counters = self.traffic.counters(route["id"], canary["version"])
            self.traffic.begin(canary_counters)
        klass = SERVER_ERROR  # unless answered: an exception here becomes aiohttp's 500
        try:
            base = route["upstream"] if canary is None else canary["upstream"]
            response = await self._serve(request, route, base, upstream_path, prefix, m, client)
            klass = status_class(response.status)
        except asyncio.CancelledError:
            m.answered(CLIENT_CLOSED)
            klass = CLOSED
            raise
        finally:
            m.pending.dec()
            self.activity.end(route["id"])
            elapsed = time.perf_counter() - started
            m.duration.observe(elapsed)
            self.traffic.end(counters, klass, elapsed)
            if canary_counters is not None:
                self.traffic.end(canary_counters, klass, elapsed)
        return self._count(m, response)

    @staticmethod
    def _count(m: metrics.EndpointMetrics, response: web.StreamResponse) -> web.StreamResponse:
        m.answered(response.status)
        return response

    async def _resolve(self, request: web.BaseRequest, path: str, client: str) -> tuple[dict, str, str] | None:
        host = (request.host or "").lower()
        label, _, domain = host.partition(".")
        if host_name_candidate(label):
            route = await self.cache.get("route", label, client)
            if route is not None and route.get("domain") in (domain, _without_port(domain)):
                return route, path, ""
        segments = path.split("/", 3)
        if len(segments) < 3:
            return None
        account, name = unquote(segments[1]), unquote(segments[2])
        if not (ENDPOINT_NAME_RE.match(name) and ACCOUNT_NAME_RE.match(account)):
            return None
        route = await self.cache.get("route", cached_host_id(account, name), client)
        if route is None or route["account"] != account or route["name"] != name:
            return None
        if not self._serves_path_style(host, route):
            return None
        rest = "/" + segments[3] if len(segments) == 4 else "/"
        return route, rest, f"/{segments[1]}/{segments[2]}"

    def _serves_path_style(self, host: str, route: dict) -> bool:
        """Path style is answered only on the endpoint's own cluster domain or an operator-listed Host: a
        name that happens to reach the gateway (an IP, a stray DNS record) does not expose every endpoint."""
        names = {host, _without_port(host)}
        return route.get("domain") in names or not names.isdisjoint(self.config.path_hosts)

    # ---------------------------------------------------------------- serving one endpoint
    async def _serve(self, request: web.BaseRequest, route: dict, base: str | None, path: str, prefix: str,
                     m: metrics.EndpointMetrics, client: str) -> web.StreamResponse:
        """Answer one admitted request; ``base``: the upstream base URL chosen (the stable ``route["upstream"]``
        or the canary's, ``gateway.split``). Whether to refuse or hold is the endpoint's state alone."""
        intent, state = route["intent"], route["state"]
        if intent == "delete" or state == "deleting":
            return error(404, Code.ENDPOINT_NOT_FOUND, "The endpoint is being deleted")
        if intent == "pause":
            return error(503, Code.ENDPOINT_PAUSED, "The endpoint is paused; resume it to serve requests")
        if not route["upstream"]:
            return error(503, Code.ENDPOINT_UNAVAILABLE, "No cluster serves this endpoint yet", retry_after=RETRY_WAKING)
        if state == "failed":
            return error(503, Code.ENDPOINT_FAILED, f"The endpoint failed: {route['message']}")
        if route.get("simulated"):
            return error(503, Code.SIMULATED_NODE, "The endpoint runs on a simulated node (a local development "
                         "cluster): no container runs there to answer requests")
        deadline = time.monotonic()
        if not serving(route):
            timeout = self._hold_timeout(request)
            deadline += timeout
            m.held.inc()
            try:
                ready = await self.holds.hold(route, timeout, client)
            except QueueFull:
                return error(429, Code.TOO_MANY_WAITING, f"{self.config.queue_limit} requests already wait for this "
                             "endpoint to wake up", retry_after=RETRY_QUEUE_FULL)
            except ClientQueueFull:
                return error(429, Code.TOO_MANY_WAITING, f"{self.config.client_hold_limit} requests from your address "
                             "already wait for endpoints to wake up", retry_after=RETRY_QUEUE_FULL)
            finally:
                m.held.dec()
            if not ready:
                what = "scaled to zero and waking up" if intent == "scale_to_zero" else "starting"
                return error(503, Code.ENDPOINT_WAKING, f"The endpoint is {what}; no replica was ready within "
                             f"{timeout:g}s", retry_after=RETRY_WAKING)
        query = request.rel_url.raw_query_string
        # Already percent-encoded as the client sent it: passed on byte for byte, never re-quoted.
        url = URL(base + path + (f"?{query}" if query else ""), encoded=True)
        headers = request_headers(request, forward_authorization=route["type"] == "public", prefix=prefix,
                                  trusted_proxies=self.config.trusted_proxies)
        while True:
            try:
                return await forward(request, self.upstream, url, headers)
            except UpstreamUnreachable as exc:
                # A replica that just became ready may not be behind the Service yet: keep trying while the
                # hold lasts (nothing was sent, so retrying is safe).
                if time.monotonic() + self.config.probe_interval >= deadline:
                    log.info("gateway.upstream_unreachable endpoint=%s error=%s", route["id"], exc)
                    return error(502, Code.UPSTREAM_UNAVAILABLE, "The endpoint's service is not reachable")
                await asyncio.sleep(self.config.probe_interval)

    def _hold_timeout(self, request: web.BaseRequest) -> float:
        """GATEWAY_HOLD_TIMEOUT, shortened (never lengthened) by the HF ``X-Scale-Up-Timeout`` header."""
        timeout = self.config.hold_timeout
        raw = request.headers.get("X-Scale-Up-Timeout")
        if raw:
            try:
                timeout = min(timeout, max(float(raw), 0.0))
            except ValueError:
                pass
        return timeout

    # ---------------------------------------------------------------- the gateway's own routes
    def _own(self, request: web.BaseRequest, path: str) -> web.Response:
        if path == "/healthz":
            return web.json_response({"status": "ok"})
        if path == "/readyz":
            # Ready once the feed was reached; an outage afterwards keeps the pod in service, answering
            # from memory what it can verify (taking every replica out would refuse even that).
            ok = self.cache.ever_connected
            body = {"status": "ok" if ok else "unavailable", "feed": "connected" if self.cache.connected else "down"}
            return web.Response(status=200 if ok else 503, text=json.dumps(body), content_type="application/json")
        if path == "/metrics":
            return self._metrics(request)
        return error(404, Code.NOT_FOUND, "Unknown gateway route")

    def _metrics(self, request: web.BaseRequest) -> web.Response:
        """The metrics name every endpoint and its traffic: only for ``Bearer <GATEWAY_METRICS_TOKEN>``.
        Without a configured token they are not served at all (404, as if absent)."""
        expected = self.config.metrics_token
        if not expected:
            return error(404, Code.NOT_FOUND, "Unknown gateway route")
        sent = bearer(request.headers.get("Authorization"))
        if sent is None or not hmac.compare_digest(sent.encode(), expected.encode()):
            return error(401, Code.UNAUTHENTICATED, "The metrics need 'Authorization: Bearer <metrics token>'",
                         headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _without_port(host: str) -> str:
    """``host`` without a trailing ``:<port>`` (an IPv6 literal's colons are inside brackets)."""
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and not name.endswith(":") else host
