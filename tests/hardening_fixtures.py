"""Helpers for the hardening tests: a private redis-server that a test may stop and start again, and the
Celery app pointed at it. Test modules wrap them in fixtures of their own (importing pytest fixtures
across modules would shadow them)."""

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from scripts.devservices import redis_server_binary
from tests.helpers import free_port


class RedisServer:
    """A redis-server process of the test's own on a free port (never the shared 6379), no persistence."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db), socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then wait): its port refuses connections afterwards."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@contextmanager
def running_redis(directory) -> Iterator[RedisServer]:
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.stop()


def celery_reset_connections(*, close: bool) -> None:
    """Forget the Celery app's pool of broker connections and producers, so the next publish uses whatever
    ``app.conf.broker_url`` says now; with ``close``, close their connections first.

    kombu keeps one pool per broker URL for the whole process, so a pool is closed with
    ``close_pool=False``: marked closed, the suite's own broker pool would refuse every later publish.
    """
    from controlplane.celery import app

    if close:
        for pool in (app.amqp._producer_pool, app._pool):
            if pool is not None:
                pool.force_close_all(close_pool=False)
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def celery_publishing_to(server: RedisServer, settings) -> Iterator[RedisServer]:
    """The Celery app (and, through ``settings``, the readiness check) using ``server`` as the broker."""
    from controlplane.celery import app

    previous = app.conf.broker_url
    settings.CELERY_BROKER_URL = server.url()
    app.conf.broker_url = server.url()
    celery_reset_connections(close=False)  # the suite's broker pool stays as it is, for the tests after this
    try:
        yield server
    finally:
        celery_reset_connections(close=True)  # this server's connections
        app.conf.broker_url = previous
