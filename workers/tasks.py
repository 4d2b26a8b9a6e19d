"""Celery tasks: thin, id-only wrappers around the domain. Names are explicit and stable."""

from celery import shared_task


@shared_task(name="workers.reconcile_endpoint", acks_late=True, ignore_result=True)
def reconcile_endpoint_task(endpoint_id: int) -> None:
    """Converge one endpoint (idempotent). Transient failures are retried inside the reconciler's policy."""
    from deployments.reconcile import endpoint_reconcile

    endpoint_reconcile(endpoint_id=endpoint_id)


@shared_task(name="workers.reconcile_sweep", acks_late=True, ignore_result=True)
def reconcile_sweep_task() -> int:
    """Re-enqueue every endpoint that is not converged; returns how many. Catches lost messages."""
    from deployments.reconcile import endpoints_unconverged

    ids = endpoints_unconverged()
    for endpoint_id in ids:
        reconcile_endpoint_task.apply_async(args=[endpoint_id], retry=False)
    return len(ids)
