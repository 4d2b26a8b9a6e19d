"""The create and list paths through a real web server: one client, then 50 racing for an exact quota.

Run: ``make install && .venv/bin/python bench/admission.py [--clients 50] [--rounds 4] [--singles 1000]``

Starts gunicorn (4 workers, ``DJANGO_DEBUG`` off as in production) against a fresh bench database, with its
access log giving each request's server time (``%(D)s``). Three phases, each beside its yardstick:

1. **one client**: ``singles`` creates one after another on one keep-alive connection, and as many
   ``/healthz`` calls on the same server (the framework's floor: routing, middleware, WSGI);
2. **a list of ``singles`` endpoints**: ``GET /v2/endpoint/<account>`` beside a bare ``SELECT`` of the same
   rows (psycopg, no ORM) timed in this process, the same number of times;
3. **admission under concurrency**: an account whose CPU quota fits exactly ``fit`` endpoints, and
   ``clients`` simultaneous creates per round: creates/s, latency, and whether exactly ``fit`` were admitted
   each round.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, bench_args, percentiles, setup_django  # noqa: E402

ACCESS_FORMAT = "%(m)s %(U)s %(s)s %(D)s"  # method, path, status, server time in microseconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, token: str, path: str, body: dict) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status, time.perf_counter() - started


class Client:
    """One keep-alive connection; ``call`` returns (status, client-side seconds)."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, float]:
        started = time.perf_counter()
        self.conn.request(method, path, json.dumps(body) if body is not None else None, self.headers)
        response = self.conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started


class AccessLog:
    """Server times from gunicorn's access log, read from where the last ``take`` stopped."""

    def __init__(self, path: str):
        self.path, self.offset = path, 0

    def take(self, method: str, path_prefix: str, settle: float = 0.3) -> list[float]:
        time.sleep(settle)  # workers flush their log lines after answering
        with open(self.path) as log:
            log.seek(self.offset)
            lines = log.readlines()
            self.offset = log.tell()
        times = []
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] == method and parts[1].startswith(path_prefix):
                times.append(int(parts[3]) / 1e6)
        return times


def p50(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2]


def one_client(port: int, log: AccessLog, token: str, account: str, n: int) -> None:
    from tests.factories import endpoint_spec

    client = Client(port, token)
    for _ in range(5):  # warm every worker's connections and caches; not counted
        client.call("GET", "/healthz")
        client.call("GET", f"/v2/endpoint/{account}")
    log.take("GET", "/")
    seen = []
    for i in range(n):
        status, elapsed = client.call("POST", f"/v2/endpoint/{account}", endpoint_spec(f"ep-{i}"))
        assert status == 202, f"create {i} answered {status}"
        seen.append(elapsed)
    created = log.take("POST", f"/v2/endpoint/{account}")
    floor_seen = [client.call("GET", "/healthz")[1] for _ in range(n)]
    floor = log.take("GET", "/healthz")
    print(f"one client, {n} creates: server {percentiles(created)}; client {percentiles(seen)}")
    print(f"  yardstick /healthz on the same server: server {percentiles(floor)}; client {percentiles(floor_seen)}")
    print(f"  create server time p50 {p50(created) * 1000:.1f} ms = {p50(created) / p50(floor):.1f}x the floor "
          f"(goal <= 15 ms)")


def listing(port: int, log: AccessLog, token: str, account, reads: int) -> None:
    import psycopg
    from django.db import connection

    client = Client(port, token)
    client.call("GET", f"/v2/endpoint/{account.slug}")  # warm
    log.take("GET", "/")
    sizes, seen = [], []
    for _ in range(reads):
        started = time.perf_counter()
        client.conn.request("GET", f"/v2/endpoint/{account.slug}", headers=client.headers)
        response = client.conn.getresponse()
        body = response.read()
        seen.append(time.perf_counter() - started)
        sizes.append(len(json.loads(body)["items"]))
    served = log.take("GET", f"/v2/endpoint/{account.slug}")
    table = connection.ops.quote_name("endpoints_endpoint")
    selects = []
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute(f"SELECT * FROM {table} WHERE account_id = %s ORDER BY name", (account.pk,)).fetchall()
        for _ in range(reads):
            started = time.perf_counter()
            rows = conn.execute(f"SELECT * FROM {table} WHERE account_id = %s ORDER BY name",
                                (account.pk,)).fetchall()
            selects.append(time.perf_counter() - started)
    assert set(sizes) == {len(rows)}, (sizes, len(rows))
    print(f"list of {len(rows)} endpoints: server {percentiles(served)}; client {percentiles(seen)}")
    print(f"  yardstick bare SELECT of the same rows: {percentiles(selects)}")
    print(f"  list p50 = {p50(served) / p50(selects):.1f}x the bare SELECT (goal <= 5x)")


def admission(port: int, log: AccessLog, clients: int, fit: int, rounds: int) -> None:
    from controlplane.services import token_create, user_create
    from quotas.services import quota_set
    from tests.factories import endpoint_spec

    latencies, admitted_ok, total_time, total_requests, server = [], True, 0.0, 0, []
    for round_no in range(-1, rounds):  # round 0 warms the workers up and is not counted
        user = user_create(username=f"bench{round_no + 1}")
        _, token = token_create(user=user, name="bench")
        quota_set(account=user.personal_account, accelerator="cpu", limit=2 * fit)  # x2 = 2 vCPUs
        barrier, results = threading.Barrier(clients), []

        def client(i: int, user=user, token=token, barrier=barrier, results=results) -> None:
            barrier.wait()
            results.append(post(port, token, f"/v2/endpoint/{user.username}", endpoint_spec(f"ep-{i}")))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        statuses = [s for s, _ in results]
        times = log.take("POST", f"/v2/endpoint/{user.username}")
        if round_no < 0:
            continue
        server += times
        admitted_ok &= statuses.count(202) == fit and statuses.count(403) == clients - fit
        latencies += [lat for _, lat in results]
        total_time += elapsed
        total_requests += len(results)
        print(f"round {round_no + 1}: {statuses.count(202)} admitted, {statuses.count(403)} quota_exceeded, "
              f"{elapsed * 1000:.0f} ms for {clients} concurrent creates")
    print(f"admission: {total_requests / total_time:.0f} create calls/s with {clients} concurrent clients "
          f"(4 gunicorn workers; goal >= 200) · latency {percentiles(latencies)} · server {percentiles(server)}")
    print(f"exactly {fit} admitted every round: {admitted_ok}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--fit", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--singles", type=int, default=1000, help="one client's creates; the list's size")
    parser.add_argument("--reads", type=int, default=20, help="list reads (and bare SELECTs)")
    args = bench_args(parser, clients=4, fit=2, rounds=1, singles=5, reads=2)
    env = setup_django()
    env.update({"DJANGO_DEBUG": "false", "LOG_LEVEL": "ERROR", "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "DJANGO_SECRET_KEY": "bench-" + "k" * 40, "GATEWAY_RECORD_KEY": "r" * 40,
                "MAX_ENDPOINTS_PER_ACCOUNT": str(args.singles + 10),
                # the rate limit stays on (its Redis round trip is part of every call), above what one run asks
                "API_RATE_LIMIT": "1000000/min",
                "PYTHONWARNINGS": "ignore:No directory at:UserWarning"})  # collectstatic is the image's job
    from controlplane.services import token_create, user_create
    from quotas.services import quota_set

    port = free_port()
    access = Path(tempfile.mkdtemp(prefix="bench-admission-")) / "access.log"
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "4", "--log-level", "warning", "--access-logfile", str(access),
                            "--access-logformat", ACCESS_FORMAT,
                            "--config", "python:controlplane.webserver"], cwd=REPO, env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        log = AccessLog(str(access))
        user = user_create(username="single")
        _, token = token_create(user=user, name="bench")
        quota_set(account=user.personal_account, accelerator="cpu", limit=2 * args.singles)
        one_client(port, log, token, user.username, args.singles)
        listing(port, log, token, user.personal_account, args.reads)
        admission(port, log, args.clients, args.fit, args.rounds)
    finally:
        web.terminate()
        web.wait(10)
        shutil.rmtree(access.parent)


if __name__ == "__main__":
    main()
