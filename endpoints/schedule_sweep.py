"""Beat's minute look at scheduled endpoints: record the scaling window in force, reconcile what changed.

The rule itself is ``endpoints.schedules`` (pure); this module reads the clock and writes rows.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from controlplane.queue import RECONCILE_ENDPOINT, enqueue

from .models import Endpoint, Intent
from .schedules import bounds, endpoint_scaling, scaling_in_force, schedule_active_at
from .services import endpoint_wake, event_record

log = logging.getLogger(__name__)


def scheduled_endpoints():
    """The endpoints beat looks at: those with schedules (a partial index), not being deleted."""
    return (Endpoint.objects.exclude(scaling_schedules=[]).exclude(intent=Intent.DELETE)
            .only("id", "generation", "intent", "min_replica", "max_replica", "scaling_schedules",
                  "schedule_active", "schedule_next_change").order_by("pk"))


def schedules_apply(*, now: datetime | None = None) -> list[int]:
    """Record the window in force at ``now`` (default: the current time; tests pass their own clock) on every
    endpoint with schedules whose window changed, and have the new bounds applied where they changed: a
    running endpoint gets a reconcile (queued after commit); a scaled-to-zero one whose minReplica rose above
    zero is woken (a window that asks for replicas brings the endpoint up). Returns those endpoints' ids.

    One query reads the scheduled endpoints; each change is one conditional UPDATE (skipped when a spec
    write or another pass came in meanwhile) and one ``schedule`` event. Idempotent: a
    second call with the same ``now`` changes nothing. Paused endpoints get their window recorded only.
    """
    now = now or timezone.now()
    applied = []
    for endpoint in scheduled_endpoints().iterator(chunk_size=500):
        scaling = endpoint_scaling(endpoint)
        # The cheap check first (only the windows open now are searched); the whole answer, with the next change,
        # when that check or the recorded next change says something moved. A null next change (none foreseen)
        # is not recomputed each minute: the cheap check still catches every change of window.
        due = endpoint.schedule_next_change is not None and endpoint.schedule_next_change <= now
        try:
            if not due and schedule_active_at(scaling, now) == endpoint.schedule_active:
                continue
            state = scaling_in_force(scaling, now)
        except (ValueError, KeyError) as exc:  # a stored schedule that no longer parses (a zone gone from
            # the database, say): that endpoint keeps its last bounds, the others are still applied
            log.error("schedule.unreadable endpoint=%s error=%r", endpoint.pk, exc)
            continue
        if (state.active, state.next_change) == (endpoint.schedule_active, endpoint.schedule_next_change):
            continue
        before = bounds(scaling, endpoint.schedule_active)
        changed = (state.min_replica, state.max_replica) != before
        with transaction.atomic():
            # Compare-and-set on what was read: a spec write meanwhile (a new generation) recorded its own window,
            # and of two overlapping beat passes only one records the change (one event, one reconcile).
            written = Endpoint.objects.filter(
                pk=endpoint.pk, generation=endpoint.generation, schedule_active=endpoint.schedule_active,
                schedule_next_change=endpoint.schedule_next_change,
            ).update(schedule_active=state.active, schedule_next_change=state.next_change)
            if not written:
                continue
            if state.active != endpoint.schedule_active:
                which = f"schedule {state.active}" if state.active is not None else "the base scaling"
                event_record(endpoint=endpoint, kind="schedule", actor=None,
                             message=f"Replicas {state.min_replica}-{state.max_replica} from {which}",
                             diff={"status.scaling.activeSchedule": [endpoint.schedule_active, state.active]})
            if changed and endpoint.intent == Intent.RUN:
                transaction.on_commit(lambda endpoint_id=endpoint.pk: enqueue(RECONCILE_ENDPOINT, endpoint_id))
                applied.append(endpoint.pk)
        if changed and endpoint.intent == Intent.SCALE_TO_ZERO and state.min_replica > 0:
            # its own transaction (the account lock first, as every spec write); it queues the reconcile itself
            endpoint_wake(endpoint_id=endpoint.pk, message=f"Endpoint waking up: schedule {state.active} asks for "
                                                           f"{state.min_replica} replicas")
            applied.append(endpoint.pk)
        log.info("schedule.changed endpoint=%s active=%s replicas=%s-%s next=%s", endpoint.pk, state.active,
                 state.min_replica, state.max_replica, state.next_change and state.next_change.isoformat())
    return applied
