"""The operator console's overview at 10 and at 10,000 endpoints, beside the admin's endpoint list.

Run: ``make install && .venv/bin/python bench/console.py [--endpoints 10000] [--requests 20]``

Fills a fresh bench database with endpoints spread over 100 accounts and three regions (one in a hundred
failed), then times ``/admin/console/`` through Django's test client (in process: the figure is server
time, no network) and, as the yardstick measured in the same run, the admin's own endpoint changelist
(``/admin/endpoints/endpoint/``: 100 rows a page, a page operators already live with). Prints the query
count of each page at both sizes, which must not grow with the endpoints.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import bench_args, percentiles, setup_django  # noqa: E402


def fill(total: int) -> None:
    """Grow the database to ``total`` endpoints (rows in bulk: the console reads rows, whoever wrote them)."""
    from controlplane.models import Account
    from controlplane.services import user_create
    from endpoints.models import Endpoint, State
    from quotas.models import InstanceType

    accounts = list(Account.objects.order_by("pk")[:100])
    for i in range(len(accounts), 100):
        accounts.append(user_create(username=f"bench-{i:03d}").personal_account)
    instances = list(InstanceType.objects.filter(vendor="aws", accelerator="cpu", instance_type="intel-spr")
                     .order_by("region", "instance_size")[:3])
    have = Endpoint.objects.count()
    rows = [Endpoint(account=accounts[i % 100], instance=instances[i % len(instances)], name=f"ep-{i:05d}",
                     repository="openai-community/gpt2", framework="pytorch",
                     state=State.FAILED if i % 100 == 0 else State.RUNNING,
                     message="Back-off pulling image" if i % 100 == 0 else "Endpoint is running")
            for i in range(have, total)]
    Endpoint.objects.bulk_create(rows, batch_size=2000)


def timed(client, path: str, n: int) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(path)  # warm per-process caches
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    return samples, len(queries)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    args = bench_args(parser, endpoints=200, requests=3)
    setup_django()
    from django.test import Client

    from controlplane.services import user_create

    operator = user_create(username="operator", is_staff=True)
    client = Client()
    client.force_login(operator)
    for size in (10, args.endpoints):
        fill(size)
        console, console_queries = timed(client, "/admin/console/", args.requests)
        changelist, changelist_queries = timed(client, "/admin/endpoints/endpoint/", args.requests)
        ratio = sorted(console)[len(console) // 2] / sorted(changelist)[len(changelist) // 2]
        print(f"console overview at {size} endpoints: {percentiles(console)}, {console_queries} queries")
        print(f"  yardstick, admin endpoint list at {size}: {percentiles(changelist)}, {changelist_queries} queries"
              f"  ->  overview p50 = {ratio:.2f}x the list's")


if __name__ == "__main__":
    main()
