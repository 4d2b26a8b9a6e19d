"""``make run`` on a machine with nothing running: embedded engines, the Swagger UI, the local cluster behind
the default region (an endpoint reaches running there, and the gateway says its node is simulated), data
kept across runs.

Runs exactly what the Makefile runs (devservices wrapping scripts/run.py) with the embedded engines
forced and a data directory of the test's own, twice.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def get(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, bytes]:
    """GET (or POST ``body`` as JSON) ``url``; (0, b"") when nothing answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def make_run(data_dir: Path, port: int, log: Path, gateway_port: int | None = None) -> subprocess.Popen:
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_DEFAULT_QUEUE", "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(EMBEDDED_SERVICES="1", DEVSERVICES_DATA_DIR=str(data_dir), PORT=str(port), PYTHONUNBUFFERED="1",
               GATEWAY_PORT=str(gateway_port or free_port()))
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "scripts.devservices", "--", sys.executable, "-m", "scripts.run"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
            return
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(log.read_text())


def wait_for_line(pattern: str, proc: subprocess.Popen, log: Path, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(), re.M)
        if found:
            return found
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
    raise AssertionError(f"no line /{pattern}/ in:\n{log.read_text()}")


def endpoint_on_the_local_cluster(port: int, gateway_port: int, token: str) -> None:
    """Create an endpoint in the default region: it reaches running on the local cluster, and the gateway
    answers its requests with 503 naming the simulated node."""
    sha = "a" * 40  # a full commit: no Hub call
    spec = {"name": "web", "type": "protected", "provider": {"vendor": "aws", "region": "us-east-1"},
            "compute": {"accelerator": "cpu", "instanceType": "intel-spr", "instanceSize": "x2",
                        "scaling": {"minReplica": 1, "maxReplica": 1}},
            "model": {"repository": "gpt2", "revision": sha, "framework": "pytorch", "image": {"huggingface": {}}}}
    status, body = get(f"http://127.0.0.1:{port}/v2/endpoint/admin", token, body=spec)
    assert status == 202, body
    deadline, state = time.monotonic() + 120, None
    while state != "running":
        assert time.monotonic() < deadline, f"the endpoint stayed {state}"
        time.sleep(1)
        status, body = get(f"http://127.0.0.1:{port}/v2/endpoint/admin/web", token)
        state = json.loads(body)["status"]["state"] if status == 200 else None
    status, body = get(f"http://127.0.0.1:{gateway_port}/admin/web/", token)
    assert status == 503 and json.loads(body)["code"] == "simulated_node", (status, body)
    assert b"simulated node" in body


def stop(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=60) in (0, 130, -2)


def test_make_run_with_embedded_engines_twice(tmp_path):
    port, data = free_port(), tmp_path / "data"
    first_log, second_log = tmp_path / "run1.log", tmp_path / "run2.log"
    gateway_port = free_port()
    proc = make_run(data, port, first_log, gateway_port)
    try:
        wait_ready(port, proc, first_log)
        deadline = time.monotonic() + 20  # the endpoint gateway runs too
        while get(f"http://127.0.0.1:{gateway_port}/healthz")[0] != 200:
            assert time.monotonic() < deadline, first_log.read_text()
            time.sleep(0.2)
        status, page = get(f"http://127.0.0.1:{port}/api/docs/")
        assert status == 200 and b"swagger" in page.lower()
        text = first_log.read_text()
        assert len(re.findall(r"^services: postgres=embedded .* redis=embedded ", text, re.M)) == 1, text
        token = re.search(r"API token (cpt_\S+)", text).group(1)
        assert json.loads(get(f"http://127.0.0.1:{port}/api/whoami-v2", token)[1])["name"] == "admin"
        kubectl = wait_for_line(r"^run: local cluster 'local' \(simulated nodes\) serves aws/us-east-1 .* "
                                r"(kubectl --kubeconfig \S+ get nodes,pods -A)$", proc, first_log, 900).group(1)
        nodes = subprocess.run([str(REPO / ".tools" / "bin" / "kubectl"), *kubectl.split()[1:]],
                               capture_output=True, text=True, check=True).stdout
        assert nodes.count(" Ready ") == 4, nodes
        endpoint_on_the_local_cluster(port, gateway_port, token)
    finally:
        stop(proc)
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 0  # everything it started is gone

    proc = make_run(data, port, second_log)
    try:
        wait_ready(port, proc, second_log)
        assert "created operator" not in second_log.read_text()
        status, body = get(f"http://127.0.0.1:{port}/api/whoami-v2", token)
        assert status == 200 and json.loads(body)["name"] == "admin"  # the first run's account and token
    finally:
        stop(proc)
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
