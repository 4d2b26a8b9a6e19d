"""Webhook deliveries with real Celery worker and beat processes on the real broker: a worker SIGKILLed in the
middle of an attempt loses nothing (the outbox row stays pending; once its lease ends the beat sweep queues
it again) and every delivery arrives, each under its one ``webhook-id``. And two workers handed the same
delivery at once send it once.
"""

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from controlplane.models import WebhookAttempt, WebhookDelivery
from controlplane.webhooks import events
from controlplane.webhooks.sender import deliver
from controlplane.webhooks.services import webhook_create
from tests.factories import make_user
from tests.gatewayrig import database_url
from tests.helpers import celery_processes

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class SlowReceiver:
    """Answers 200 to every POST after ``delay`` seconds (the first ``slow_first`` requests only); records
    the ``webhook-id`` of each request as it arrives."""

    def __init__(self, delay: float, slow_first: int):
        self.ids: list[str] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.ids.append(self.headers["webhook-id"])
                receiver.arrived.set()
                if len(receiver.ids) <= slow_first:
                    time.sleep(delay)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender is gone (killed)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def processes(broker, tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.CELERY_BROKER_URL,
           "SECRETS_ENCRYPTION_KEY": settings.SECRETS_ENCRYPTION_KEY, "DJANGO_DEBUG": "true", "PYTHONUNBUFFERED": "1",
           "WEBHOOK_ALLOWED_CIDRS": "127.0.0.1/32", "WEBHOOK_TIMEOUT_SECONDS": "3", "WEBHOOK_LEASE_SECONDS": "4",
           "WEBHOOK_SWEEP_SECONDS": "1", "WEBHOOK_RETRY_BASE_SECONDS": "1",
           # Only the sweep this test is about: the others would only add noise to the logs.
           "RECONCILE_SWEEP_SECONDS": "3600", "DRIFT_SWEEP_SECONDS": "3600", "GATEWAY_IDLE_SWEEP_SECONDS": "3600",
           "REGISTRY_SWEEP_SECONDS": "3600", "CLUSTER_PROBE_SECONDS": "3600"}
    yield from celery_processes(tmp_path, env)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def allowed(settings):
    settings.WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32"]


def test_no_delivery_is_lost_when_a_worker_dies_mid_attempt(processes, allowed):
    receiver = SlowReceiver(delay=2.5, slow_first=1)
    try:
        alice = make_user("alice")
        webhook_create(account=alice.personal_account, url=receiver.url, actor=alice)
        with transaction.atomic():  # five events; their messages are queued on commit
            deliveries = [d for i in range(5) for d in events.emit(
                account=alice.personal_account, event_type="endpoint.created", data={"n": i})]
        worker = processes("worker")
        assert receiver.arrived.wait(60), "the worker never sent the first delivery"
        os.killpg(worker.pid, signal.SIGKILL)  # mid-attempt: the receiver has not answered yet
        worker.wait(timeout=10)
        assert WebhookAttempt.objects.count() == 0, "the killed attempt recorded nothing"

        processes("worker")
        processes("beat")
        wanted = {d.message_id for d in deliveries}
        wait_for(lambda: WebhookDelivery.objects.filter(status="succeeded").count() == 5, timeout=90,
                 what="every delivery to succeed")
        assert set(receiver.ids) == wanted, "none missing, none invented"
        assert receiver.ids.count(receiver.ids[0]) >= 2, "the interrupted one was sent again under its own id"
        assert WebhookAttempt.objects.count() == 5, "each delivery recorded as delivered once"
    finally:
        receiver.stop()


def test_two_workers_never_make_the_same_attempt(allowed):
    receiver = SlowReceiver(delay=1.0, slow_first=10)
    try:
        alice = make_user("alice")
        webhook_create(account=alice.personal_account, url=receiver.url, actor=alice)
        with transaction.atomic():
            (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
        results, barrier = [], threading.Barrier(4)

        def worker():
            barrier.wait()
            try:
                results.append(deliver(delivery.pk))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len([r for r in results if r is not None]) == 1 and len(results) == 4
        assert receiver.ids == [delivery.message_id]
    finally:
        receiver.stop()
