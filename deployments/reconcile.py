"""The reconcile loop: lock, load, converge, record status. Level-triggered and idempotent.

Until a cluster registry exists, nothing can be placed: an endpoint stays ``pending`` with a message
saying no cluster serves its (vendor, region), and a delete of such an endpoint removes the row.
"""

import logging

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from endpoints.locks import endpoint_lock_key
from endpoints.models import Endpoint, EndpointEvent, Intent, State

log = logging.getLogger(__name__)

SETTLED = (State.RUNNING, State.PAUSED, State.SCALED_TO_ZERO, State.FAILED, State.UPDATE_FAILED)


def endpoints_unconverged() -> list[int]:
    """Ids of endpoints whose status does not describe their current spec or whose state is not settled."""
    rows = Endpoint.objects.filter(Q(observed_generation__lt=F("generation")) | ~Q(state__in=SETTLED))
    return list(rows.values_list("pk", flat=True))


def endpoint_reconcile(*, endpoint_id: int) -> None:
    """Converge one endpoint. Skips (returns) if another worker holds its lock; a gone row is a no-op."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [endpoint_lock_key(endpoint_id)])
        if not cursor.fetchone()[0]:
            log.info("reconcile.skipped_locked endpoint=%s", endpoint_id)
            return
    try:
        _reconcile(endpoint_id)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [endpoint_lock_key(endpoint_id)])


def _reconcile(endpoint_id: int) -> None:
    endpoint = Endpoint.objects.select_related("instance").filter(pk=endpoint_id).first()
    if endpoint is None:
        return
    if endpoint.intent == Intent.DELETE:
        # Nothing reached a cluster (no registry yet), so nothing is left to remove.
        endpoint.delete()
        log.info("reconcile.deleted endpoint=%s", endpoint_id)
        return
    if endpoint.intent != Intent.RUN:
        _status(endpoint, state=endpoint.state, message=endpoint.message)
        return
    instance = endpoint.instance
    _status(endpoint, state=State.PENDING,
            message=f"No cluster is registered for {instance.vendor}/{instance.region}; waiting for one")


def _status(endpoint: Endpoint, *, state: str, message: str) -> None:
    """Write status only if it changed; append a state event on a state change."""
    changed = endpoint.state != state or endpoint.message != message or endpoint.observed_generation != endpoint.generation
    if not changed:
        return
    with transaction.atomic():
        updated = Endpoint.objects.filter(pk=endpoint.pk, generation=endpoint.generation).update(
            state=state, message=message, observed_generation=endpoint.generation, last_reconciled_at=timezone.now())
        if updated and endpoint.state != state:
            EndpointEvent.objects.create(endpoint=endpoint, kind="state", message=message, from_state=endpoint.state,
                                         to_state=state, generation=endpoint.generation)
