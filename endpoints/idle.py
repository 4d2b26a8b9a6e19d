"""Idle scale-to-zero: endpoints with ``minReplica`` 0 and a ``scaleToZeroTimeout`` that saw no request
for that many minutes are scaled to zero; the gateway wakes them on the next request.

Idle time runs from the later of the last request the gateway recorded (``controlplane.feed.activity_get``)
and the endpoint's last spec or intent change (a just-created or just-woken endpoint is not idle).
"""

import logging
from datetime import datetime, timedelta

import redis
from django.db.models import Q
from django.utils import timezone

from controlplane.errors import DomainError
from controlplane.feed import activity_get

from .models import Endpoint, Intent, State
from .schedules import scheduled_bounds
from .services import endpoint_scale_to_zero

log = logging.getLogger(__name__)


def idle_candidates() -> list[Endpoint]:
    """Running endpoints that may scale to zero at all: whose minReplica in force is 0 (a scaling window's,
    while one is open, else the base one). Private ones never do: their traffic does not pass the gateway,
    which therefore can neither see it nor wake them."""
    rows = (Endpoint.objects.filter(intent=Intent.RUN, state=State.RUNNING)
            .filter(Q(min_replica=0) | ~Q(scaling_schedules=[])).exclude(type="private")
            .filter(~Q(scale_to_zero_timeout=None), scale_to_zero_timeout__gt=0).select_related("account"))
    return [endpoint for endpoint in rows if scheduled_bounds(endpoint)[0] == 0]


def idle_sweep(*, now: datetime | None = None) -> list[int]:
    """Scale to zero every idle endpoint (actor: the system); returns their ids.

    ``now`` defaults to the current time (tests pass their own clock). Does nothing when the gateway's
    activity cannot be read: without it, idleness would be a guess. Idempotent; an endpoint changed
    concurrently (paused, deleted) is skipped.
    """
    now = now or timezone.now()
    candidates = idle_candidates()
    try:
        activity = activity_get([e.pk for e in candidates])
    except redis.RedisError as exc:
        log.warning("idle.sweep_skipped reason=activity_unreadable error=%s", type(exc).__name__)
        return []
    scaled = []
    for endpoint in candidates:
        seen = activity.get(endpoint.pk)
        last = max(endpoint.updated_at, datetime.fromtimestamp(seen, tz=now.tzinfo)) if seen else endpoint.updated_at
        if now - last < timedelta(minutes=endpoint.scale_to_zero_timeout):
            continue
        try:
            endpoint_scale_to_zero(account=endpoint.account, name=endpoint.name, actor=None)
        except DomainError as exc:
            log.info("idle.skipped endpoint=%s reason=%s", endpoint.pk, exc)
            continue
        log.info("idle.scaled_to_zero endpoint=%s idle_since=%s", endpoint.pk, last.isoformat())
        scaled.append(endpoint.pk)
    return scaled
