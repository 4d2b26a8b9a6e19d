"""Shared set-up for the benchmarks: a fresh database of their own, Django configured against it.

Benchmarks print their figures and never gate on them. They use the same Postgres and Redis as the
suite (DATABASE_URL / REDIS_URL, or the local defaults), in a database named ``controlplane_bench`` that
is dropped and re-created on each run, and Redis database 14 with a queue of their own.
"""

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


def percentiles(samples: list[float]) -> str:
    """``p50 … p99 … max …`` in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (f"p50 {statistics.median(ordered) * 1000:.1f} ms · p99 {p99 * 1000:.1f} ms · "
            f"max {ordered[-1] * 1000:.1f} ms (n={len(ordered)})")
