"""The Celery application ``controlplane``: Redis broker, tasks in ``workers``, schedule for beat."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


@app.on_after_finalize.connect
def _schedule(sender, **_kwargs) -> None:
    from django.conf import settings

    from . import queue

    sweeps = (("reconcile sweep", queue.RECONCILE_SWEEP, settings.RECONCILE_SWEEP_SECONDS),
              ("drift sweep", queue.DRIFT_SWEEP, settings.DRIFT_SWEEP_SECONDS),
              ("idle sweep", queue.IDLE_SWEEP, settings.GATEWAY_IDLE_SWEEP_SECONDS),
              ("registry refresh", queue.REGISTRY_REFRESH, settings.REGISTRY_SWEEP_SECONDS),
              ("cluster probe", queue.CLUSTER_PROBE, settings.CLUSTER_PROBE_SECONDS),
              ("webhook sweep", queue.WEBHOOK_SWEEP, settings.WEBHOOK_SWEEP_SECONDS),
              ("cost accrual", queue.COSTS_ACCRUE, settings.COST_ACCRUE_SECONDS),
              ("scaling schedules", queue.SCALING_SCHEDULES, settings.SCALING_SCHEDULE_SECONDS))
    for name, task, seconds in sweeps:
        # A sweep not started within its interval is dropped (the next one does its work), so sweeps slowed
        # by an unreachable cluster never pile up in the queue ahead of the endpoint passes.
        sender.add_periodic_task(float(seconds), sender.signature(task), name=name, expires=float(seconds))
