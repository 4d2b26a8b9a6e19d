"""Test rig for the gateway: a stub upstream, a real ``python -m gateway`` process, a cuttable TCP relay.

- ``StubUpstream``: an aiohttp server on 127.0.0.1 (its own thread and loop) standing in for every
  endpoint's Service. ``/health`` answers 200 only while ``ready()``; ``/sse`` streams events, the last
  one only after ``release_sse`` is set; ``/upload`` reads the body incrementally (``received`` counts
  bytes as they arrive); ``/big?bytes=N`` streams N bytes; anything else echoes the request as JSON.
  Every request is appended to ``requests`` as (method, path, query, headers).
- ``GatewayProcess``: the real gateway as a subprocess, against the test database and Redis.
- ``Relay``: a TCP forwarder whose ``cut()`` drops every connection and refuses new ones, to take Redis
  away from the gateway alone (the suite's own Redis keeps running).
"""

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from aiohttp import web
from django.conf import settings
from django.db import connection

from controlplane.names import host_id
from deployments import feed
from endpoints import services
from endpoints.models import Endpoint
from tests.factories import endpoint_spec
from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "rig-metrics-token"  # what GatewayProcess sets GATEWAY_METRICS_TOKEN to unless told otherwise


def database_url() -> str:
    """The test database as a URL for subprocesses (the gateway, Celery workers)."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    host = s["HOST"] or "127.0.0.1"
    query = f"?host={host}" if host.startswith("/") else ""
    netloc = f"{auth}@{'localhost' if query else host}:{s['PORT'] or 5432}"
    return f"postgres://{netloc}/{s['NAME']}{query}"


class _LoopThread:
    """An asyncio loop on a daemon thread; ``call(coro)`` runs a coroutine there and waits."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class StubUpstream(_LoopThread):
    def __init__(self):
        super().__init__()
        self.ready = lambda: True
        self.requests: list[tuple[str, str, str, dict]] = []
        self.received = 0
        self.release_sse = threading.Event()
        self.port = free_port()
        app = web.Application()
        app.router.add_route("*", "/health", self._health)
        app.router.add_route("GET", "/sse", self._sse)
        app.router.add_route("POST", "/upload", self._upload)
        app.router.add_route("GET", "/big", self._big)
        app.router.add_route("GET", "/broken", self._broken)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self.runner = web.AppRunner(app, access_log=None)
        self.call(self._start())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        self.release_sse.set()
        self.call(self.runner.cleanup())
        self.close()

    def _log(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path, request.rel_url.raw_query_string, dict(request.headers)))

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.ready() else 503, text="ok")

    async def _echo(self, request: web.Request) -> web.Response:
        if not self.ready():
            return web.Response(status=503, text="no replica")  # as a Service with no ready pod would fail
        self._log(request)
        body = await request.read()
        return web.json_response({"method": request.method, "path": request.path,
                                  "query": request.rel_url.raw_query_string, "raw_path": request.rel_url.raw_path,
                                  "headers": dict(request.headers), "body": body.decode(errors="replace")},
                                 headers={"X-Upstream": "stub", "Proxy-Authenticate": "Basic"})

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await asyncio.get_running_loop().run_in_executor(None, self.release_sse.wait, 30)
        try:
            await response.write(b"data: last\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the gateway hung up because its client did
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        self._log(request)
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            self.received += len(chunk)
            digest.update(chunk)
        return web.json_response({"bytes": self.received, "sha256": digest.hexdigest()})

    async def _broken(self, request: web.Request) -> web.StreamResponse:
        """Promises 1 MiB, sends a little, then drops the connection."""
        response = web.StreamResponse()
        response.content_length = 1 << 20
        await response.prepare(request)
        await response.write(b"partial")
        await asyncio.sleep(0.05)
        request.transport.close()
        return response

    async def _big(self, request: web.Request) -> web.StreamResponse:
        total = int(request.query.get("bytes", "0"))
        response = web.StreamResponse()
        response.content_length = total
        await response.prepare(request)
        block = b"x" * 65536
        sent = 0
        while sent < total:
            piece = block[: min(len(block), total - sent)]
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response


class Relay(_LoopThread):
    """127.0.0.1:<port> -> ``target``; ``cut()`` closes everything and refuses, ``restore()`` accepts again."""

    def __init__(self, target_host: str, target_port: int):
        super().__init__()
        self.target = (target_host, target_port)
        self.port = free_port()
        self.writers: set[asyncio.StreamWriter] = set()
        self.server = self.call(self._listen())

    async def _listen(self):
        return await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def cut(self) -> None:
        async def _cut():
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()
        self.call(_cut())

    def restore(self) -> None:
        self.server = self.call(self._listen())

    def stop(self) -> None:
        self.cut()
        self.close()


class GatewayProcess:
    """``python -m gateway`` on a free port, pointed at the test database and Redis (or ``redis_url``), with
    this test process's record key and ``METRICS_TOKEN``, serving path style on Host 127.0.0.1 (keyword
    arguments override any variable)."""

    def __init__(self, log_path: Path, redis_url: str | None = None, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": redis_url or settings.REDIS_URL,
                "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
                "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
                "GATEWAY_REDIS_PREFIX": settings.GATEWAY_REDIS_PREFIX, "GATEWAY_BIND": f"127.0.0.1:{self.port}",
                "GATEWAY_PATH_HOSTS": "127.0.0.1",  # what self.get sends path-style requests to
                "GATEWAY_RECORD_KEY": settings.GATEWAY_RECORD_KEY, "GATEWAY_METRICS_TOKEN": METRICS_TOKEN,
                "SECRETS_ENCRYPTION_KEY": settings.SECRETS_ENCRYPTION_KEY, "DJANGO_DEBUG": "true",
                "PYTHONUNBUFFERED": "1", **env}
        self.metrics_token = full["GATEWAY_METRICS_TOKEN"]
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env=full, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{self.url}/_gateway/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not become ready:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text()[-6000:]

    def get(self, path: str, *, host: str | None = None, token: str | None = None, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if host:
            headers["Host"] = host
        if token:
            headers["Authorization"] = f"Bearer {token}"
        method = kwargs.pop("method", "GET")
        return requests.request(method, self.url + path, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one series in /_gateway/metrics (None when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.metrics_text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None

    def metrics_text(self, path: str = "/_gateway/metrics") -> str:
        r = requests.get(self.url + path, headers={"Authorization": f"Bearer {self.metrics_token}"}, timeout=5)
        assert r.status_code == 200, r.text
        return r.text

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- endpoints behind the gateway
def deploy(account, name: str, type_: str, actor, **overrides) -> Endpoint:
    """An endpoint the reconciler has reported running (the status write and its publication, simulated)."""
    endpoint = services.endpoint_create(account=account, spec=endpoint_spec(name, type=type_, **overrides), actor=actor)
    return set_state(endpoint, "running")


def set_state(endpoint: Endpoint, state: str, **fields) -> Endpoint:
    Endpoint.objects.filter(pk=endpoint.pk).update(state=state, **fields)
    feed.route_publish(account_slug=endpoint.account.slug, name=endpoint.name)
    return Endpoint.objects.select_related("account").get(pk=endpoint.pk)


def host(endpoint: Endpoint) -> str:
    return f"{host_id(endpoint.account.slug, endpoint.name)}.endpoints.test"


def error_of(response: requests.Response) -> tuple[int, str]:
    try:
        return response.status_code, json.loads(response.text).get("code", "")
    except ValueError:
        return response.status_code, response.text[:80]


def start_worker(log_path: Path, **env: str) -> subprocess.Popen:
    """A real Celery worker on the test database and this run's queue (as tests/test_workers_e2e.py runs it)."""
    full = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "GATEWAY_REDIS_PREFIX": settings.GATEWAY_REDIS_PREFIX,
            "SECRETS_ENCRYPTION_KEY": settings.SECRETS_ENCRYPTION_KEY, "DJANGO_DEBUG": "true",
            "RECONCILE_MAX_BACKOFF_SECONDS": "1", "PYTHONUNBUFFERED": "1", **env}
    full.pop("HF_HUB_TOKEN", None)
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--pool", "solo",
                                 "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                                cwd=REPO, env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
