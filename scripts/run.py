"""``make run``: create the database if missing, migrate, then run web, worker, beat, gateway and the cluster
watcher together.

Web is gunicorn on http://127.0.0.1:8000 (``PORT`` to change). The endpoint gateway listens on
http://127.0.0.1:8080 (``GATEWAY_PORT``) and serves endpoints path-style, ``/<account>/<name>/...``, on
``127.0.0.1:<port>`` and ``localhost:<port>`` (``GATEWAY_PATH_HOSTS``, unless set already): register a cluster
with ``--ingress-domain 127.0.0.1:8080 --endpoint-url-template 'http://{domain}/{account}/{name}'`` so that
``status.url`` points there. Ctrl-C (or SIGTERM) stops every
process; if any one of them exits, the others are stopped too and the exit code is passed on. On the
first run of an empty database an ``admin`` operator is created and its password and an API token are
printed once. Static files are collected into ``STATIC_ROOT`` first, as the image does at build time, so the
admin and the API docs are styled with ``DJANGO_DEBUG`` on or off.

Logs: every process logs at ``LOG_LEVEL`` (default INFO). Celery's line per task received, finished and
sent by beat shows only at ``TASK_LOG_LEVEL``, which follows ``LOG_LEVEL=DEBUG`` and is WARNING otherwise.

The local cluster: when no cluster serves the default region (aws/us-east-1), or the one that does is the
local cluster an earlier run registered, the local Kubernetes cluster (``scripts.localcluster``, data in
``<data>/localcluster``) is started in the background (built from source on the very first run, which
takes minutes; the API is up at once meanwhile) and registered as ``local``, marked simulated, with the
worker acting as the Helm chart's ServiceAccount. Endpoints there reach ``running``; the gateway answers
their requests with 503 (no container runs on a simulated node). A cluster this run started is stopped with
it (its data is kept). ``LOCAL_CLUSTER=off`` skips all of this.
"""

import os
import signal
import subprocess
import sys
import threading
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


DEFAULT_VENDOR, DEFAULT_REGION, LOCAL_NAME = "aws", "us-east-1", "local"


class DefaultCluster:
    """The local cluster behind the default region, started and registered in a background thread."""

    def __init__(self, data: Path, gateway_port: str):
        from scripts.localcluster import DEFAULT_DIR, LocalCluster

        self.cluster = LocalCluster(data / DEFAULT_DIR)
        self.gateway_port = gateway_port
        self.started_here = False
        self.thread = threading.Thread(target=self._bring_up, name="local-cluster", daemon=True)

    @staticmethod
    def wanted(url: str) -> bool:
        """No cluster serves the default region, or the local one an earlier run registered does."""
        import psycopg

        if os.environ.get("LOCAL_CLUSTER", "").strip().lower() in {"0", "off", "false", "no"}:
            return False
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SELECT name, simulated FROM deployments_cluster WHERE vendor = %s AND region = %s "
                               "AND enabled", [DEFAULT_VENDOR, DEFAULT_REGION]).fetchone()
        return row is None or (row[0] == LOCAL_NAME and row[1])

    def _bring_up(self) -> None:
        from scripts.localcluster.worker import worker_kubeconfig

        try:
            self.started_here = not self.cluster.running()
            print(f"run: starting the local cluster for {DEFAULT_VENDOR}/{DEFAULT_REGION} in the background "
                  f"(data {self.cluster.dir})", flush=True)
            self.cluster.up()
            text, _user = worker_kubeconfig(self.cluster, token_seconds=30 * 24 * 3600)
            path = self.cluster.dir / "worker-kubeconfig"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a credential: owner only
            with os.fdopen(fd, "w") as f:
                os.fchmod(fd, 0o600)
                f.write(text)
            manage("register_cluster", "--name", LOCAL_NAME, "--vendor", DEFAULT_VENDOR, "--region", DEFAULT_REGION,
                   "--kubeconfig", str(path), "--simulated", "--ingress-domain", f"127.0.0.1:{self.gateway_port}",
                   "--endpoint-url-template", "http://{domain}/{account}/{name}", capture=True)
        except Exception as exc:  # noqa: BLE001 - the API keeps serving; say why endpoints stay pending
            print(f"run: the local cluster did not start ({exc}); endpoints in {DEFAULT_VENDOR}/{DEFAULT_REGION} "
                  "stay pending until a cluster is registered", flush=True)
            return
        print(f"run: local cluster '{LOCAL_NAME}' (simulated nodes) serves {DEFAULT_VENDOR}/{DEFAULT_REGION}  ·  "
              f"kubectl --kubeconfig {self.cluster.kubeconfig} get nodes,pods -A", flush=True)

    def stop(self) -> None:
        self.thread.join(timeout=30)
        if self.started_here:
            self.cluster.down()


def main() -> int:
    from controlplane.settings import DATABASE_URL

    port = os.environ.get("PORT", "8000")
    log_level = (os.environ.get("LOG_LEVEL") or "INFO").upper()
    gateway_port = os.environ.get("GATEWAY_PORT", "8080")
    database_create_if_missing(DATABASE_URL)
    manage("migrate", "--no-input", "-v", "0")
    manage("collectstatic", "--no-input", "-v", "0")
    first_operator(DATABASE_URL)
    data = Path(os.environ.get("DEVSERVICES_DATA_DIR") or REPO / ".data")
    data.mkdir(parents=True, exist_ok=True)
    commands = {
        "web": [PYTHON, "-m", "gunicorn", "controlplane.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "--access-logfile", "-", "--config", "python:controlplane.webserver"],
        "worker": [PYTHON, "-m", "celery", "-A", "controlplane", "worker", "--loglevel", log_level, "--concurrency", "2"],
        "beat": [PYTHON, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", log_level,
                 "--schedule", str(data / "celerybeat-schedule")],
        "gateway": [PYTHON, "-m", "gateway"],
        "watcher": [PYTHON, "manage.py", "watch_clusters"],
    }
    # The gateway serves path style only on the Hosts it is told: here, the addresses it is printed under.
    env = {"GATEWAY_PATH_HOSTS": f"127.0.0.1:{gateway_port},localhost:{gateway_port}", **os.environ,
           "GATEWAY_BIND": f"127.0.0.1:{gateway_port}"}
    procs = {name: subprocess.Popen(cmd, cwd=REPO, env=env) for name, cmd in commands.items()}
    default_cluster = DefaultCluster(data, gateway_port) if DefaultCluster.wanted(DATABASE_URL) else None
    if default_cluster:
        default_cluster.thread.start()
    base = f"http://127.0.0.1:{port}"
    print(f"run: web {base}  ·  Swagger UI {base}/api/docs/  ·  admin {base}/admin/  ·  "
          f"hf CLI (PYTHONPATH=scripts/hfclient): HF_INFERENCE_ENDPOINTS_ENDPOINT={base}/v2 "
          f"HF_INFERENCE_CATALOG_ENDPOINT={base}/api/v1/catalog HF_ENDPOINT={base}  ·  Ctrl-C stops all", flush=True)
    metrics = (f"its metrics http://127.0.0.1:{gateway_port}/metrics with 'Authorization: Bearer $GATEWAY_METRICS_TOKEN'"
               if os.environ.get("GATEWAY_METRICS_TOKEN") else "its metrics: set GATEWAY_METRICS_TOKEN to serve them")
    print(f"run: gateway http://127.0.0.1:{gateway_port}/<account>/<endpoint>/...  ·  {metrics}", flush=True)

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
    if default_cluster:
        default_cluster.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
