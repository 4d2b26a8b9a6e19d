"""A real Celery worker on the real broker logs a task's failure, but not a line per task it receives and
finishes, unless LOG_LEVEL (or TASK_LOG_LEVEL) asks for them.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def worker_log(tmp_path: Path, **env: str) -> str:
    """Start a worker, have it run a task that succeeds and one that fails, and return what it printed."""
    from controlplane.celery import app

    log = tmp_path / f"worker-{len(list(tmp_path.iterdir()))}.log"
    full = {k: v for k, v in os.environ.items() if k not in {"LOG_LEVEL", "TASK_LOG_LEVEL"}}
    full |= {"REDIS_URL": settings.CELERY_BROKER_URL, "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
             "PYTHONUNBUFFERED": "1", **env}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--pool", "solo",
                                 "--without-heartbeat", "--without-gossip", "--without-mingle",
                                 "--loglevel", full.get("LOG_LEVEL", "INFO")],
                                cwd=REPO, env=full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        app.send_task("celery.accumulate", args=[1, 2], queue=queue)  # a built-in task that returns its args
        app.send_task("workers.reconcile_sweep", args=["unexpected"], queue=queue)  # raises TypeError
        deadline = time.monotonic() + 60
        while "raised unexpected" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return log.read_text()


def test_the_worker_logs_failures_but_not_a_line_per_task_by_default(broker, tmp_path):
    text = worker_log(tmp_path)
    assert "ERROR" in text and "workers.reconcile_sweep" in text and "TypeError" in text, text
    assert "] received" not in text and "succeeded in" not in text, text
    assert "ready." in text, text  # the worker's own INFO lines still show


@pytest.mark.parametrize("env", [{"LOG_LEVEL": "DEBUG"}, {"TASK_LOG_LEVEL": "INFO"}], ids=["LOG_LEVEL", "TASK_LOG_LEVEL"])
def test_per_task_lines_show_when_asked_for(broker, tmp_path, env):
    text = worker_log(tmp_path, **env)
    assert re.search(r"celery\.accumulate\[\S+\] received", text) and "succeeded in" in text, text
    assert "raised unexpected" in text, text


@pytest.mark.django_db
def test_each_lifecycle_transition_is_one_readable_line(caplog):
    """From the services (create, pause) and from the reconciler's status writer alike; a pass that changes
    only the message logs nothing."""
    from deployments.observe import Observation
    from deployments.status import status_record
    from endpoints import services
    from tests.factories import endpoint_spec, make_user

    alice = make_user("alice")
    with caplog.at_level("INFO", logger="endpoints.services"):
        endpoint = services.endpoint_create(account=alice.personal_account, spec=endpoint_spec("web"), actor=alice)
        status_record(endpoint, endpoint.generation, Observation("running", "Endpoint is running", 1, 1), url=None)
        endpoint.refresh_from_db()
        status_record(endpoint, endpoint.generation, Observation("running", "Still running", 1, 1), url=None)
        services.endpoint_pause(account=alice.personal_account, name="web", actor=alice)
    lines = [r.getMessage() for r in caplog.records if r.name == "endpoints.services"]
    assert lines == ["endpoint alice/web: new -> pending (Endpoint created)",
                     "endpoint alice/web: pending -> running (Endpoint is running)",
                     "endpoint alice/web: running -> paused (Endpoint paused by the user)"]
