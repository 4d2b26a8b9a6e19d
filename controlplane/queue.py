"""Work for the Celery workers, queued by task name, so that no layer imports the task code above it.

The names are the contract with ``workers.tasks`` (which registers each under exactly this name), with
beat's schedule (``controlplane.celery``) and, for ``WAKE``, with the gateway (``controlplane.records``).
"""

import logging

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
