"""Work for the Celery workers, queued by task name, so that no layer imports the task code above it.

The names are the contract with ``workers.tasks`` (which registers each under exactly this name), with
beat's schedule (``controlplane.celery``) and, for ``WAKE``, with the gateway (``controlplane.records``).

Reconcile passes are also asked for through marks in the broker's Redis, so that asks never stack passes
on one endpoint (what a controller's work queue does): ``reconcile_schedule`` keeps at most one scheduled
pass per endpoint, ``reconcile_soon`` at most one queued pass that has not started yet. The task clears
a mark as its pass starts (``pass_starting``), so an ask after that queues a new pass.
"""

import logging
from functools import lru_cache

from .records import WAKE_TASK

log = logging.getLogger(__name__)

RECONCILE_ENDPOINT = "workers.reconcile_endpoint"
RECONCILE_SWEEP = "workers.reconcile_sweep"
DRIFT_SWEEP = "workers.drift_sweep"
IDLE_SWEEP = "workers.idle_sweep"
REGISTRY_REFRESH = "workers.registry_refresh"
CLUSTER_PROBE = "workers.cluster_probe"
WEBHOOK_DELIVER = "workers.webhook_deliver"
WEBHOOK_SWEEP = "workers.webhook_sweep"
COSTS_ACCRUE = "workers.costs_accrue"
SCALING_SCHEDULES = "workers.scaling_schedules"
WAKE = WAKE_TASK


def enqueue(task: str, *args, **options) -> bool:
    """Queue ``task`` (one of the names above) with ``args`` on the default queue; True when the broker took it.

    A broker outage is logged, never raised: Postgres already holds the truth, and the beat sweeps find
    whatever was not queued. ``options`` are Celery's (``countdown``, ``kwargs``).
    """
    from .celery import app

    try:
        app.send_task(task, args=list(args), retry=False, **options)
    except Exception as exc:  # the broker is down or refusing
        log.warning("task.enqueue_failed task=%s args=%s error=%s", task, args, type(exc).__name__)
        return False
    return True


MARK_TTL_SECONDS = 60  # a mark whose pass was lost expires on its own (and the sweeps find the endpoint)


def broker_redis():
    """A pooled client of the Redis the tasks are published to (one pool per URL, reused by every pass)."""
    from .celery import app

    return _redis_for(app.conf.broker_url)


@lru_cache(maxsize=4)
def _redis_for(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def reconcile_mark(kind: str, endpoint_id: int) -> str:
    """The Redis key of one of an endpoint's pass marks: ``scheduled``, ``queued`` or ``wanted``."""
    from .celery import app

    return f"reconcile:{kind}:{app.conf.task_default_queue}:{endpoint_id}"


def reconcile_schedule(endpoint_id: int, countdown: float = 0) -> bool:
    """Queue a pass in ``countdown`` seconds unless one is already scheduled for this endpoint; True if queued.

    Requeues and sweeps use it, so they never stack chains of passes on one endpoint. Direct enqueues after a
    spec change bypass it."""
    if not broker_redis().set(reconcile_mark("scheduled", endpoint_id), "1", nx=True,
                              ex=int(countdown) + MARK_TTL_SECONDS):
        return False
    return enqueue(RECONCILE_ENDPOINT, endpoint_id, kwargs={"scheduled": True}, countdown=countdown)


def reconcile_soon(endpoint_id: int) -> bool:
    """Queue a pass now unless one queued earlier has not started yet (it will read what changed); True if
    queued. The watcher's asks, many per endpoint while its pods start, come through here. A Redis outage
    queues the pass anyway."""
    import redis

    try:
        if not broker_redis().set(reconcile_mark("queued", endpoint_id), "1", nx=True, ex=MARK_TTL_SECONDS):
            return False
    except redis.RedisError:
        pass
    return enqueue(RECONCILE_ENDPOINT, endpoint_id)


def pass_starting(endpoint_id: int, *, scheduled: bool) -> None:
    """A pass of the endpoint is about to start: asks from now on need a pass of their own."""
    keys = [reconcile_mark("queued", endpoint_id)] + ([reconcile_mark("scheduled", endpoint_id)] if scheduled else [])
    broker_redis().delete(*keys)
