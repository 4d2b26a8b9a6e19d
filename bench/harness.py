"""Shared set-up for the benchmarks: a fresh database of their own, Django configured against it.

Benchmarks print their figures and never gate on them. They use the same Postgres and Redis as the
suite (DATABASE_URL / REDIS_URL, or the local defaults), in a database named ``controlplane_bench`` that
is dropped and re-created on each run, and Redis database 14 with a queue of their own.
"""

import argparse
import os
import statistics
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def setup_django() -> dict:
    """Point Django at a fresh bench database; returns the environment for child processes."""
    import psycopg

    base = urlparse(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/controlplane")
    bench_url = urlunparse(base._replace(path="/controlplane_bench"))
    with psycopg.connect(urlunparse(base._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS controlplane_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE controlplane_bench")
    redis = urlparse(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    env = {"DATABASE_URL": bench_url, "REDIS_URL": urlunparse(redis._replace(path="/14")),
           "CELERY_TASK_DEFAULT_QUEUE": f"bench-{uuid.uuid4().hex[:8]}", "DJANGO_SETTINGS_MODULE": "controlplane.settings",
           "SECRETS_ENCRYPTION_KEY": "bench-key", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
           "DJANGO_DEBUG": "true"}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--no-input", verbosity=0)
    return {**os.environ, **env}


def bench_args(parser: argparse.ArgumentParser, **smoke) -> argparse.Namespace:
    """The bench's arguments, plus ``--smoke``: the tiny sizes ``smoke`` replace the parsed ones, so that CI
    (tests/test_benches.py) runs every bench end to end."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, so CI runs every bench")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(smoke)
    return args


def percentiles(samples: list[float], unit: str = "ms") -> str:
    """``p50 … p99 … max …`` of durations in seconds, shown in ``unit`` (``ms`` or ``s``)."""
    scale = {"ms": 1000, "s": 1}[unit]
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (f"p50 {statistics.median(ordered) * scale:.1f} {unit} · p99 {p99 * scale:.1f} {unit} · "
            f"max {ordered[-1] * scale:.1f} {unit} (n={len(ordered)})")
