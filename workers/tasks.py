"""Celery tasks: thin, id-only wrappers around the domain. Names are explicit and stable."""

import logging
import random

from celery import shared_task
from django.conf import settings

from controlplane import queue

log = logging.getLogger(__name__)


def backoff(retries: int, hint: float | None = None) -> float:
    """Capped exponential backoff with jitter; a server's Retry-After wins when it is longer."""
    delay = min(2 ** retries, settings.RECONCILE_MAX_BACKOFF_SECONDS) * (0.5 + random.random() / 2)
    return max(delay, hint or 0)


@shared_task(bind=True, name=queue.RECONCILE_ENDPOINT, acks_late=True, ignore_result=True, max_retries=None)
def reconcile_endpoint_task(self, endpoint_id: int, scheduled: bool = False) -> None:
    """Converge one endpoint (idempotent). Transient failures retry with backoff up to RECONCILE_MAX_RETRIES;
    past that the beat sweep picks the endpoint up again, since its status is not converged. While the
    cluster is still moving, the next pass is scheduled (at most one per endpoint).

    A pass asked for while another worker holds the endpoint is not retried a second later: like a
    controller's work queue, the holder runs once more as soon as it is done. The ask is a Redis mark set
    before trying the lock and cleared once it is held; the holder reads (and clears) it after releasing,
    so every ask is followed by a pass that started after it, either the holder's next or another worker's.
    A pass is also scheduled (at most one per endpoint) in case the holder dies first."""
    from deployments.reconcile import Busy, Retry, endpoint_reconcile

    redis = queue.broker_redis()
    queue.pass_starting(endpoint_id, scheduled=scheduled and self.request.retries == 0)
    wanted = queue.reconcile_mark("wanted", endpoint_id)
    redis.set(wanted, "1", ex=queue.MARK_TTL_SECONDS)
    while True:
        try:
            outcome = endpoint_reconcile(endpoint_id=endpoint_id, locked=lambda: redis.delete(wanted))
        except Busy:
            queue.reconcile_schedule(endpoint_id, settings.RECONCILE_REQUEUE_SECONDS)
            return
        except Retry as exc:
            if self.request.retries >= settings.RECONCILE_MAX_RETRIES:
                log.warning("reconcile.gave_up endpoint=%s reason=%s", endpoint_id, exc)
                return
            raise self.retry(countdown=backoff(self.request.retries, exc.delay), exc=exc) from exc
        if outcome is None or not redis.delete(wanted):  # nobody asked while this pass ran
            break
    if outcome is not None and outcome.requeue_after:
        queue.reconcile_schedule(endpoint_id, outcome.requeue_after)


@shared_task(name=queue.RECONCILE_SWEEP, acks_late=True, ignore_result=True)
def reconcile_sweep_task() -> int:
    """Schedule a pass for every endpoint that is not converged and has none pending; returns how many.
    Catches lost messages."""
    from deployments.selectors import endpoints_unconverged

    return sum(queue.reconcile_schedule(endpoint_id) for endpoint_id in endpoints_unconverged())


@shared_task(name=queue.DRIFT_SWEEP, acks_late=True, ignore_result=True)
def drift_sweep_task() -> int:
    """Compare live objects with desired (one LIST per kind per cluster); re-enqueue what drifted."""
    from deployments.drift import drift_sweep

    return len(drift_sweep(enqueue=lambda endpoint_id: queue.enqueue(queue.RECONCILE_ENDPOINT, endpoint_id)).drifted)


@shared_task(name=queue.WAKE, acks_late=True, ignore_result=True)
def endpoint_wake_task(endpoint_id: int) -> None:
    """Sent by the gateway when a request reaches a scaled-to-zero endpoint; idempotent (the gateway
    re-sends while it holds requests)."""
    from endpoints.services import endpoint_wake

    endpoint_wake(endpoint_id=endpoint_id)


@shared_task(name=queue.IDLE_SWEEP, acks_late=True, ignore_result=True)
def idle_sweep_task() -> int:
    """Scale to zero the endpoints idle for their ``scaleToZeroTimeout``; returns how many."""
    from endpoints.idle import idle_sweep

    return len(idle_sweep())


@shared_task(name=queue.REGISTRY_REFRESH, acks_late=True, ignore_result=True)
def registry_refresh_task() -> int:
    """Re-enqueue endpoints whose ECR pull credential is due; their reconcile fetches a fresh one."""
    from deployments.registry import endpoints_with_due_credentials

    ids = endpoints_with_due_credentials()
    for endpoint_id in ids:
        queue.enqueue(queue.RECONCILE_ENDPOINT, endpoint_id)
    return len(ids)


@shared_task(name=queue.CLUSTER_PROBE, acks_late=True, ignore_result=True)
def cluster_probe_task() -> int:
    """Record each enabled cluster's reachability, Kubernetes version and node capacity; returns how many
    answered."""
    from deployments.probe import clusters_probe

    return clusters_probe()


@shared_task(name=queue.WEBHOOK_DELIVER, acks_late=True, ignore_result=True)
def webhook_deliver_task(delivery_id: int) -> None:
    """One attempt of a webhook delivery, if it is due and no other worker holds it (idempotent: a duplicate
    message finds it claimed or not due). Failures are recorded and retried by the sweep, never raised."""
    from controlplane.webhooks.sender import deliver

    deliver(delivery_id)


@shared_task(name=queue.WEBHOOK_SWEEP, acks_late=True, ignore_result=True)
def webhook_sweep_task() -> int:
    """Queue every due webhook delivery: retries whose backoff ended, and any whose message was lost or whose
    worker died mid-attempt (its lease ended); prune finished ones past their retention. Returns how many
    were queued."""
    from controlplane.webhooks.sender import deliveries_due, deliveries_prune

    deliveries_prune()
    due = deliveries_due()
    for delivery_id in due:
        # Expiring with the interval: a message not started by the next sweep is dropped unrun (that sweep
        # queues the delivery again), so a backlog never stacks copies of one delivery in the queue.
        queue.enqueue(queue.WEBHOOK_DELIVER, delivery_id, expires=float(settings.WEBHOOK_SWEEP_SECONDS))
    return len(due)


@shared_task(name=queue.COSTS_ACCRUE, acks_late=True, ignore_result=True)
def costs_accrue_task() -> int:
    """Accrue the cost ledger from the observed replicas, then act on budgets; returns endpoints accrued."""
    from endpoints.budgets import budgets_enforce
    from endpoints.costs import costs_accrue

    accrued = costs_accrue()
    budgets_enforce()
    return accrued


@shared_task(name=queue.SCALING_SCHEDULES, acks_late=True, ignore_result=True)
def scaling_schedules_task() -> int:
    """Apply the scaling windows that opened or closed since the last run; returns how many endpoints were
    queued for a reconcile because their bounds changed."""
    from endpoints.schedule_sweep import schedules_apply

    return len(schedules_apply())
