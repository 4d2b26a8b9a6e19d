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

    sender.add_periodic_task(
        float(settings.RECONCILE_SWEEP_SECONDS), sender.signature("workers.reconcile_sweep"), name="reconcile sweep"
    )
    sender.add_periodic_task(
        float(settings.DRIFT_SWEEP_SECONDS), sender.signature("workers.drift_sweep"), name="drift sweep"
    )
    sender.add_periodic_task(
        float(settings.GATEWAY_IDLE_SWEEP_SECONDS), sender.signature("workers.idle_sweep"), name="idle sweep"
    )
    sender.add_periodic_task(
        float(settings.REGISTRY_SWEEP_SECONDS), sender.signature("workers.registry_refresh"), name="registry refresh"
    )
