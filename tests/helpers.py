"""What every test module shares: the one way to build an API client, the status check that shows the
body when it fails, and a free local port.

- ``api_client(secret)``: DRF's in-process test client sending ``Authorization: Bearer <secret>`` (none when
  ``secret`` is None); ``authorization=`` sends a raw header instead, ``session_user=`` logs a user in with a
  session (the admin and the browsable API), other keywords become request defaults (``REMOTE_ADDR``).
- ``user_api(user, role)``: ``api_client`` with a fresh token of ``user``'s.
- ``live_api(base_url, secret)``: the same caller over real HTTP (``requests``), for a live server.
- ``expect(response, status)``: asserts the status with the body in the failure message; returns the response.
- ``free_port()``: a port nothing listens on at the moment of asking.
"""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
from rest_framework.test import APIClient


def api_client(secret: str | None = None, *, authorization: str | None = None, session_user=None,
               **defaults) -> APIClient:
    client = APIClient(**defaults)
    if secret is not None or authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization if authorization is not None else f"Bearer {secret}")
    if session_user is not None:
        client.force_login(session_user)
    return client


def user_api(user, role: str = "write") -> APIClient:
    from tests.factories import make_token

    return api_client(make_token(user, role=role))


def live_api(base_url: str, secret: str | None = None, *, timeout: float = 30) -> Callable[..., requests.Response]:
    """``call(method, path, **kwargs)`` against ``base_url`` with ``secret`` as the bearer token (if any);
    ``call.close()`` closes its connections."""
    session = requests.Session()
    if secret is not None:
        session.headers["Authorization"] = f"Bearer {secret}"

    def call(method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", timeout)
        return session.request(method, base_url + path, **kwargs)

    call.close = session.close
    return call


def body_of(response, limit: int = 2000) -> str:
    """The response's body as text, cut to ``limit`` characters, for failure messages."""
    content = getattr(response, "content", b"")
    if not isinstance(content, bytes | str):  # a streaming response
        return "<streaming>"
    text = content.decode(errors="replace") if isinstance(content, bytes) else content
    return text if len(text) <= limit else text[:limit] + "..."


def expect(response, status: int | tuple[int, ...], note=None):
    """Assert ``response`` answered ``status`` (or one of them), with its body (and ``note``) in the message
    when it did not. Returns the response."""
    wanted = status if isinstance(status, tuple) else (status,)
    context = f" ({note})" if note is not None else ""
    assert response.status_code in wanted, f"{response.status_code} != {status}{context}: {body_of(response)}"
    return response


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def celery_processes(tmp_path: Path, env: dict) -> Iterator[Callable[..., subprocess.Popen]]:
    """The body of a fixture that starts Celery ``worker`` / ``beat`` processes on demand, each with
    ``env`` (plus the keyword arguments of the call, as variables) and a log in ``tmp_path``; after the
    test, prints the logs and stops them all (SIGTERM, then SIGKILL after 15 s). Use: ``yield from``."""
    repo = Path(__file__).resolve().parent.parent
    started: list[subprocess.Popen] = []

    def start(kind: str, **extra) -> subprocess.Popen:
        args = {"worker": ["worker", "--pool", "solo", "--without-heartbeat", "--without-gossip",
                           "--without-mingle"],
                "beat": ["beat", "--schedule", str(tmp_path / f"beat-{len(started)}")]}[kind]
        with open(tmp_path / f"{kind}-{len(started)}.log", "w") as log:  # read back when a test fails
            proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "controlplane", *args, "--loglevel", "INFO"],
                                    cwd=repo, env={**env, **{k: str(v) for k, v in extra.items()}}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for path in sorted(tmp_path.glob("*.log")):
        print(f"----- {path.name}\n{path.read_text()[-4000:]}")
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
