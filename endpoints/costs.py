"""The cost ledger: what each endpoint's observed replicas cost, per clock hour, in Postgres.

The source is what ran, not the spec: ``ReplicaChange`` rows (written by the reconciler whenever the
cluster reports a different ready count) make a step function of ready replicas over time. Accrual walks
each endpoint from its ``CostCursor`` to ``now``, splits the steps at hour boundaries, and adds
``ready × seconds`` and ``ready × seconds × pricePerHour / 3600`` to that hour's ``CostHour`` row. A paused
or scaled-to-zero endpoint has no ready replica, so its time costs nothing (and the status says so).

Contract: ``costs_accrue`` is idempotent over time (accruing to t1 then t2 equals accruing to t2 at once,
up to the 6-decimal rounding of each addition) and serialised (a second concurrent run does nothing); the
price is the endpoint's instance price when the accrual runs (beat runs it every ``COST_ACCRUE_SECONDS``,
so an instance change is priced at most one interval late).
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from controlplane.models import Account

from .locks import ledger_lock_for_transaction
from .models import CostCursor, CostHour, Endpoint, ReplicaChange

HOUR = timedelta(hours=1)
MICRO = Decimal("0.000001")
CURRENCY = "USD"


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def replica_seconds_by_hour(steps: list[tuple[datetime, int]], start: datetime, ready: int,
                            end: datetime) -> dict[datetime, float]:
    """Ready-replica-seconds per UTC hour over ``[start, end)``: ``ready`` replicas from ``start``, then each
    ``(at, ready)`` step in order (steps outside the window are clamped into it)."""
    out: dict[datetime, float] = defaultdict(float)

    def add(a: datetime, b: datetime, n: int) -> None:
        while n and a < b:
            boundary = min(hour_of(a) + HOUR, b)
            out[hour_of(a)] += n * (boundary - a).total_seconds()
            a = boundary

    t = start
    for at, new_ready in steps:
        at = min(max(at, t), end)
        add(t, at, ready)
        t, ready = at, new_ready
    add(t, end, ready)
    return dict(out)


@dataclass
class _Walk:
    endpoint: Endpoint
    start: datetime
    ready: int
    steps: list[tuple[datetime, int]]


def _walks(now: datetime, endpoint_ids: list[int] | None) -> list[_Walk]:
    """Every endpoint (of ``endpoint_ids``, when given) with something to accrue: a change since its cursor
    (or no cursor yet), or replicas ready at its cursor. Two queries."""
    changes = ReplicaChange.objects.filter(at__lte=now)
    cursors = CostCursor.objects.filter(ready__gt=0, accrued_until__lt=now)
    if endpoint_ids is not None:
        changes, cursors = changes.filter(endpoint_id__in=endpoint_ids), cursors.filter(endpoint_id__in=endpoint_ids)
    changes = (changes
               .filter(Q(endpoint__cost_cursor__isnull=True) | Q(at__gt=F("endpoint__cost_cursor__accrued_until")))
               .select_related("endpoint__instance", "endpoint__cost_cursor").order_by("endpoint_id", "at", "id"))
    walks: dict[int, _Walk] = {}
    for change in changes:
        walk = walks.get(change.endpoint_id)
        if walk is None:
            cursor = getattr(change.endpoint, "cost_cursor", None)
            start, ready = (cursor.accrued_until, cursor.ready) if cursor else (change.at, 0)
            walk = walks[change.endpoint_id] = _Walk(change.endpoint, start, ready, [])
        walk.steps.append((change.at, change.ready))
    for cursor in cursors.exclude(endpoint_id__in=list(walks)).select_related("endpoint__instance"):
        walks[cursor.endpoint_id] = _Walk(cursor.endpoint, cursor.accrued_until, cursor.ready, [])
    return list(walks.values())


def _cost(seconds: float, price_per_hour: Decimal) -> Decimal:
    return (Decimal(repr(seconds)) * price_per_hour / 3600).quantize(MICRO, rounding=ROUND_HALF_UP)


def costs_accrue(*, now: datetime | None = None, endpoint_ids: list[int] | None = None) -> int:
    """Accrue up to ``now``; returns how many endpoints were accrued (0 when another run holds the ledger).
    ``endpoint_ids`` limits it to those (and waits for the ledger rather than giving up).

    ``now`` defaults to ``COST_SETTLE_SECONDS`` ago, not the current time: a replica change is stamped
    before its transaction commits, and one stamped before the cursor but committed after it would be
    skipped for ever; status transactions are short, so changes older than the settle time are visible."""
    now = now or timezone.now() - timedelta(seconds=settings.COST_SETTLE_SECONDS)
    with transaction.atomic():
        if not ledger_lock_for_transaction(wait=endpoint_ids is not None):
            return 0
        walks = _walks(now, endpoint_ids)
        rows = []
        for walk in walks:
            price = walk.endpoint.instance.price_per_hour
            for hour, seconds in replica_seconds_by_hour(walk.steps, walk.start, walk.ready, now).items():
                rows.append((walk.endpoint.account_id, walk.endpoint.name, hour, seconds, _cost(seconds, price)))
        _add(rows)
        CostCursor.objects.bulk_create(
            [CostCursor(endpoint=w.endpoint, accrued_until=now, ready=w.steps[-1][1] if w.steps else w.ready)
             for w in walks], update_conflicts=True, unique_fields=["endpoint"], update_fields=["accrued_until", "ready"])
    return len(walks)


def costs_close(*, endpoint: Endpoint) -> None:
    """Accrue an endpoint's last hours before its row, and its replica changes with it, are deleted: its
    replicas stop now (a closing change to 0), and its cost is accrued up to now."""
    now = timezone.now()
    ReplicaChange.objects.create(endpoint=endpoint, at=now, ready=0, target=0)
    costs_accrue(now=now, endpoint_ids=[endpoint.pk])


def _add(rows: list[tuple]) -> None:
    """Add to the hour rows (creating them): one statement per batch, an increment, never a read-modify-write."""
    if not rows:
        return
    table = CostHour._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (account_id, endpoint_name, hour, replica_seconds, cost) VALUES (%s, %s, %s, %s, %s) "
            f"ON CONFLICT (account_id, endpoint_name, hour) DO UPDATE SET "
            f"replica_seconds = {table}.replica_seconds + EXCLUDED.replica_seconds, "
            f"cost = {table}.cost + EXCLUDED.cost", rows)


# ---------------------------------------------------------------- reads

def month_to_date(*, account: Account, now: datetime | None = None) -> Decimal:
    """The account's accrued cost since the month began (UTC)."""
    now = now or timezone.now()
    total = CostHour.objects.filter(account=account, hour__gte=month_start(now)).aggregate(cost=Sum("cost"))["cost"]
    return total or Decimal(0)


def endpoint_month_costs(*, account: Account, names: list[str] | None = None,
                         now: datetime | None = None) -> dict[str, Decimal]:
    """Month-to-date cost per endpoint name of ``account`` (only ``names`` when given): one query."""
    now = now or timezone.now()
    rows = CostHour.objects.filter(account=account, hour__gte=month_start(now))
    if names is not None:
        rows = rows.filter(endpoint_name__in=names)
    return {r["endpoint_name"]: r["cost"] for r in rows.values("endpoint_name").annotate(cost=Sum("cost")).order_by()}


def cost_report(*, account: Account, start: datetime, end: datetime, group_by: str) -> dict:
    """``{"from", "to", "currency", "total", "replicaHours", "items": [...]}`` over the hours starting in
    ``[start, end)``; items per endpoint name (``groupBy=endpoint``) or per UTC day (``groupBy=day``)."""
    rows = CostHour.objects.filter(account=account, hour__gte=start, hour__lt=end)
    key = {"endpoint": "endpoint_name", "day": "hour__date"}[group_by]
    grouped = rows.values(key).annotate(cost=Sum("cost"), seconds=Sum("replica_seconds")).order_by(key)
    items = [{group_by: str(r[key]), "cost": r["cost"], "replicaHours": r["seconds"] / 3600} for r in grouped]
    return {"from": start, "to": end, "currency": CURRENCY, "groupBy": group_by,
            "total": sum((i["cost"] for i in items), Decimal(0)),
            "replicaHours": sum(i["replicaHours"] for i in items), "items": items}
