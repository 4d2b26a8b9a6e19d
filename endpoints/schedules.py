"""Scheduled scaling: ``compute.scaling.schedules`` windows that replace an endpoint's min/max replicas.

Each schedule opens a window at every fire time of its ``cron`` (in its ``timezone``) that lasts
``durationMinutes`` of elapsed time. At an instant, the window in force is the open one that started
latest (on a tie, the one listed later); outside every window the base ``minReplica``/``maxReplica`` apply.

The rule is a pure function of (scaling spec, instant): ``scaling_in_force`` (no clock, no database; the
helpers at the end read an Endpoint's columns only). Beat (``endpoints.schedule_sweep``) evaluates it every
minute for the endpoints that have schedules and records the window in force on the row (``schedule_active``,
``schedule_next_change``), as the spec services do on each write; the renderer's input takes the bounds from
the row (``scheduled_bounds``), so the reconciler, the drift sweep and the API all show the one decision
recorded, and the clock is read in one place.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .cron import Cron, cron_parse, fire_after, fire_before
from .models import Endpoint

# How far ahead ``nextChange`` is looked for, and in how many steps at most (a window that restarts before
# it ends is one step per restart): beyond either, no change is foreseen and ``nextChange`` is null.
LOOKAHEAD = timedelta(days=366)
MAX_STEPS = 64


@dataclass(frozen=True)
class InForce:
    """What applies at an instant: the index of the schedule in force (None: the base bounds), the bounds,
    and the next instant at which that changes (None: none foreseen within ``LOOKAHEAD``)."""

    active: int | None
    min_replica: int
    max_replica: int
    next_change: datetime | None = None


@lru_cache(maxsize=4096)
def _compiled(cron: str, zone: str) -> tuple[Cron, ZoneInfo]:
    return cron_parse(cron), ZoneInfo(zone)


def _window_start(schedule: dict, moment: datetime) -> datetime | None:
    """The start of ``schedule``'s window open at ``moment``, or None when none is open."""
    cron, zone = _compiled(schedule["cron"], schedule.get("timezone") or "UTC")
    duration = timedelta(minutes=schedule["durationMinutes"])
    start = fire_before(cron, zone, moment, earliest=moment - duration)
    return start if start is not None and moment < start + duration else None


def _active(schedules: list[dict], moment: datetime) -> tuple[int | None, datetime | None]:
    """The index of the window in force at ``moment`` and its start: latest start wins, later index on a tie."""
    best, best_start = None, None
    for index, schedule in enumerate(schedules):
        start = _window_start(schedule, moment)
        if start is not None and (best_start is None or start >= best_start):
            best, best_start = index, start
    return best, best_start


def bounds(scaling: dict, active: int | None) -> tuple[int, int]:
    """(minReplica, maxReplica) of schedule ``active`` of ``scaling``, or the base ones (None, or an index
    the spec no longer has)."""
    schedules = scaling.get("schedules") or []
    if active is not None and 0 <= active < len(schedules):
        return schedules[active]["minReplica"], schedules[active]["maxReplica"]
    return scaling["minReplica"], scaling["maxReplica"]


def schedule_active_at(scaling: dict, moment: datetime) -> int | None:
    """The index of the schedule in force at ``moment`` (aware), or None: the cheap half of ``scaling_in_force``."""
    return _active(scaling.get("schedules") or [], moment)[0]


def scaling_in_force(scaling: dict, moment: datetime) -> InForce:
    """What ``scaling`` (``compute.scaling``: minReplica, maxReplica, schedules) applies at ``moment`` (aware)
    and until when. Pure: the same arguments always give the same answer."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    schedules = scaling.get("schedules") or []
    active, start = _active(schedules, moment)
    current = InForce(active, *bounds(scaling, active))
    if not schedules:
        return current
    horizon, at = moment + LOOKAHEAD, moment
    for _ in range(MAX_STEPS):
        # The window in force can change only when another schedule fires (it starts later, so it takes
        # over) or when the window in force ends; its own restarts are found as it "ends" inside a new window.
        candidates = [fired for index, schedule in enumerate(schedules) if index != active
                      and (fired := fire_after(*_compiled(schedule["cron"], schedule.get("timezone") or "UTC"), at,
                                               latest=horizon)) is not None]
        if active is not None:
            candidates.append(start + timedelta(minutes=schedules[active]["durationMinutes"]))
        if not candidates or (at := min(candidates)) > horizon:
            return current
        active_then, start_then = _active(schedules, at)
        if active_then != active:
            return InForce(active, current.min_replica, current.max_replica, next_change=at)
        start = start_then
    return current


def held_replica(scaling: dict) -> int:
    """The most replicas ``scaling`` may ever ask for: what the endpoint holds against its quota."""
    return max([scaling["maxReplica"], *(s["maxReplica"] for s in scaling.get("schedules") or [])])


def endpoint_scaling(endpoint: Endpoint) -> dict:
    """The stored ``compute.scaling`` bounds and schedules of ``endpoint`` (the input of the rule above)."""
    return {"minReplica": endpoint.min_replica, "maxReplica": endpoint.max_replica,
            "schedules": endpoint.scaling_schedules or []}


def scheduled_bounds(endpoint: Endpoint) -> tuple[int, int]:
    """The (min, max) replicas that apply now, as beat last decided (``schedule_active``)."""
    return bounds(endpoint_scaling(endpoint), endpoint.schedule_active)


def schedule_record(endpoint: Endpoint, moment: datetime) -> InForce:
    """Set ``endpoint``'s window in force at ``moment`` (in memory: the caller saves), as a spec write does."""
    state = scaling_in_force(endpoint_scaling(endpoint), moment)
    endpoint.schedule_active, endpoint.schedule_next_change = state.active, state.next_change
    return state
