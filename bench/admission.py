"""Quota admission under concurrency: 50 clients race to create endpoints through a real web server.

Run: ``make install && .venv/bin/python bench/admission.py [--clients 50] [--rounds 4]``

Starts gunicorn (4 workers) against a fresh bench database, gives the account a CPU quota that fits
exactly ``fit`` endpoints, and fires ``clients`` simultaneous creates per round. Prints creates/s, the
p50/p99 latency of the create call, and checks that exactly ``fit`` were admitted each round.
"""

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, bench_args, percentiles, setup_django  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--fit", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    args = bench_args(parser, clients=4, fit=2, rounds=1)
    env = setup_django()
    from controlplane.services import token_create, user_create
    from quotas.services import quota_set
    from tests.factories import endpoint_spec

    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "4", "--log-level", "warning"], cwd=REPO, env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        latencies, admitted_ok, total_time, total_requests = [], True, 0.0, 0
        for round_no in range(-1, args.rounds):  # round 0 warms the workers up and is not counted
            user = user_create(username=f"bench{round_no + 1}")
            _, token = token_create(user=user, name="bench")
            quota_set(account=user.personal_account, accelerator="cpu", limit=2 * args.fit)  # x2 = 2 vCPUs
            barrier, results = threading.Barrier(args.clients), []

            def client(i: int, user=user, token=token, barrier=barrier, results=results) -> None:
                barrier.wait()
                results.append(post(port, token, f"/v2/endpoint/{user.username}", endpoint_spec(f"ep-{i}")))

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            statuses = [s for s, _ in results]
            if round_no < 0:
                continue
            admitted_ok &= statuses.count(202) == args.fit and statuses.count(403) == args.clients - args.fit
            latencies += [lat for _, lat in results]
            total_time += elapsed
            total_requests += len(results)
            print(f"round {round_no + 1}: {statuses.count(202)} admitted, {statuses.count(403)} quota_exceeded, "
                  f"{elapsed * 1000:.0f} ms for {args.clients} concurrent creates")
        print(f"admission: {total_requests / total_time:.0f} create calls/s with {args.clients} concurrent clients "
              f"(4 gunicorn workers) · latency {percentiles(latencies)}")
        print(f"exactly {args.fit} admitted every round: {admitted_ok}")
    finally:
        web.terminate()
        web.wait(10)


if __name__ == "__main__":
    main()
