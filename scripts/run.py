"""``make run``: create the database if missing, migrate, then run web, worker, beat and gateway together.

Web is gunicorn on http://127.0.0.1:8000 (``PORT`` to change). The endpoint gateway listens on
http://127.0.0.1:8080 (``GATEWAY_PORT``) and serves endpoints path-style, ``/<account>/<name>/...``: register
a cluster with ``--ingress-domain 127.0.0.1:8080 --endpoint-url-template 'http://{domain}/{account}/{name}'``
so that ``status.url`` points there. Ctrl-C (or SIGTERM) stops every
process; if any one of them exits, the others are stopped too and the exit code is passed on. On the
first run of an empty database an ``admin`` operator is created and its password and an API token are
printed once.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def database_create_if_missing(url: str) -> None:
    """CREATE DATABASE for the name in ``url`` when it does not exist (connects to ``postgres``)."""
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/") or "controlplane"
    admin_url = parsed._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"run: created database {name}", flush=True)
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(f"run: Postgres is not reachable ({first_line}); start it "
                 "(pg_ctlcluster <version> main start, or docker compose up -d db redis) or set DATABASE_URL")


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return (result.stdout or "").strip()


def first_operator(url: str) -> None:
    """On an empty database, create the ``admin`` operator and print its password and a token, once."""
    import secrets

    import psycopg

    with psycopg.connect(url, connect_timeout=3) as conn:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM auth_user)").fetchone()[0]:
            return
    password = secrets.token_urlsafe(12)
    manage("create_user", "admin", "--staff", "--password", password, capture=True)
    token = manage("create_token", "admin", "--name", "quickstart", capture=True)
    print(f"run: created operator 'admin' (password {password}) and API token {token} — shown once", flush=True)


def main() -> int:
    from controlplane.settings import DATABASE_URL

    port = os.environ.get("PORT", "8000")
    gateway_port = os.environ.get("GATEWAY_PORT", "8080")
    database_create_if_missing(DATABASE_URL)
    manage("migrate", "--no-input", "-v", "0")
    first_operator(DATABASE_URL)
    data = Path(os.environ.get("DEVSERVICES_DATA_DIR") or REPO / ".data")
    data.mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [PYTHON, "-m", "gunicorn", "controlplane.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "--access-logfile", "-"],
        "worker": [PYTHON, "-m", "celery", "-A", "controlplane", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [PYTHON, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "INFO",
                 "--schedule", str(data / "celerybeat-schedule")],
        "gateway": [PYTHON, "-m", "gateway"],
    }
    env = {**os.environ, "GATEWAY_BIND": f"127.0.0.1:{gateway_port}"}
    procs = {name: subprocess.Popen(cmd, cwd=REPO, env=env) for name, cmd in commands.items()}
    base = f"http://127.0.0.1:{port}"
    print(f"run: web {base}  ·  Swagger UI {base}/api/docs/  ·  admin {base}/admin/  ·  "
          f"HF client: INFERENCE_ENDPOINTS_ENDPOINT={base}/v2 HF_ENDPOINT={base}  ·  Ctrl-C stops all", flush=True)
    print(f"run: gateway http://127.0.0.1:{gateway_port}/<account>/<endpoint>/...  ·  "
          f"its metrics http://127.0.0.1:{gateway_port}/metrics", flush=True)

    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        exited = {name: p.returncode for name, p in procs.items() if p.poll() is not None}
        if exited:
            name, code = next(iter(exited.items()))
            print(f"run: {name} exited with {code}; stopping the others", flush=True)
            break
        time.sleep(0.3)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs.values():
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
