"""What the operator console shows: reads only, each a fixed number of queries whatever the endpoint count.

``overview()`` is the console's front page (endpoints by state per cluster, endpoints in trouble, clusters as
their last probe saw them, accounts nearest a quota, pending quota requests, recent events);
``replica_timeline()`` feeds one endpoint's page (with the gateway's traffic figures); ``costs_overview()``
is the cost page. The pages and their actions are ``deployments.console_views``; every action goes through
the services.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, F, FloatField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Cast, Coalesce, TruncDay
from django.utils import timezone

from controlplane.models import Account
from endpoints.costs import month_start
from endpoints.models import CostHour, Endpoint, EndpointEvent, ReplicaChange, State
from endpoints.quota import held_units
from quotas.models import Quota, QuotaRequest
from quotas.selectors import UNIT

from .models import Cluster

FAILING = (State.FAILED, State.UPDATE_FAILED)
STARTING = (State.PENDING, State.INITIALIZING)
TROUBLE_LIMIT = 50  # rows shown; the count says how many there are in all
NEAREST_LIMIT = 10
EVENTS_LIMIT = 20


@dataclass
class ClusterRow:
    """One cluster (or the endpoints of regions no enabled cluster serves: ``cluster`` None)."""

    cluster: Cluster | None
    vendor: str
    region: str
    states: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def cells(self) -> list[tuple[str, int]]:
        """``(state, count)`` in the order of ``State``, zeros included (one column per state)."""
        return [(state, self.states.get(state, 0)) for state in State.values]


@dataclass
class Overview:
    clusters: list[ClusterRow]
    states: list[str]  # the column order
    failing: tuple[str, ...]
    trouble: list[Endpoint]  # each with ``since`` (when it entered its state)
    trouble_total: int
    nearest: list[dict]  # {"account", "accelerator", "limit", "held", "ratio", "unit"}
    quota_requests: list[QuotaRequest]
    events: list[EndpointEvent]
    now: datetime


def state_since():
    """When each endpoint entered its current state: its latest event into that state from another one
    (services and the reconciler both record one), else its creation."""
    entered = (EndpointEvent.objects.filter(endpoint=OuterRef("pk"), to_state=OuterRef("state"))
               .exclude(from_state=F("to_state")).order_by("-created_at", "-id").values("created_at")[:1])
    return Coalesce(Subquery(entered), F("created_at"))


def _trouble(now: datetime):
    """Failed and update-failed endpoints, and those pending or initializing for longer than
    ``CONSOLE_STUCK_SECONDS``: the longest in trouble first."""
    stuck_before = now - timedelta(seconds=settings.CONSOLE_STUCK_SECONDS)
    rows = (Endpoint.objects.filter(state__in=FAILING + STARTING).annotate(since=state_since())
            .filter(Q(state__in=FAILING) | Q(since__lt=stuck_before)))
    return rows


def _by_cluster() -> list[ClusterRow]:
    rows: dict[tuple[str, str], ClusterRow] = {}
    for cluster in Cluster.objects.filter(enabled=True):
        rows[(cluster.vendor, cluster.region)] = ClusterRow(cluster, cluster.vendor, cluster.region)
    counts = (Endpoint.objects.values("instance__vendor", "instance__region", "state")
              .annotate(n=Count("pk")).order_by())
    for count in counts:
        key = (count["instance__vendor"], count["instance__region"])
        row = rows.get(key) or rows.setdefault(key, ClusterRow(None, *key))
        row.states[count["state"]] = count["n"]
    return sorted(rows.values(), key=lambda r: (r.cluster is None, r.vendor, r.region))


def _nearest() -> list[dict]:
    """The (account, accelerator) quotas most used, as held / limit, among those holding anything."""
    quotas = (Quota.objects.select_related("account")
              .annotate(held=held_units(account=OuterRef("account"), accelerator=OuterRef("accelerator")))
              .filter(held__gt=0)
              .annotate(ratio=Cast(F("held"), FloatField()) / Cast(F("limit"), FloatField()))
              .filter(limit__gt=0).order_by("-ratio", "account__slug", "accelerator")[:NEAREST_LIMIT])
    return [{"account": q.account, "accelerator": q.accelerator, "limit": q.limit, "held": q.held,
             "ratio": q.ratio, "unit": UNIT[q.accelerator]} for q in quotas]


def overview() -> Overview:
    """The console's front page in seven queries, at 10 endpoints as at 10,000."""
    now = timezone.now()
    trouble = _trouble(now)
    return Overview(
        clusters=_by_cluster(),
        states=list(State.values),
        failing=FAILING,
        trouble=list(trouble.select_related("account", "instance").order_by("since", "pk")[:TROUBLE_LIMIT]),
        trouble_total=trouble.count(),
        nearest=_nearest(),
        quota_requests=list(QuotaRequest.objects.filter(status=QuotaRequest.Status.PENDING)
                            .select_related("account", "requested_by").order_by("created_at")[:TROUBLE_LIMIT]),
        events=list(EndpointEvent.objects.select_related("endpoint__account").order_by("-created_at", "-id")
                    [:EVENTS_LIMIT]),
        now=now,
    )


def replica_timeline(endpoint: Endpoint, start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
    """``(at, ready, target)`` steps covering ``[start, end]``: the counts in force at ``start`` (from the
    last change before it, or 0/0 when the endpoint is younger), every change inside, and the counts at
    ``end``. One query."""
    before = ReplicaChange.objects.filter(endpoint=endpoint, at__lt=start).order_by("-at", "-id").values("pk")[:1]
    changes = list(ReplicaChange.objects.filter(endpoint=endpoint)
                   .filter(Q(at__gte=start, at__lte=end) | Q(pk__in=Subquery(before))).order_by("at", "id"))
    ready = target = 0
    steps: list[tuple[datetime, int, int]] = []
    for change in changes:
        ready, target = change.ready, change.target
        steps.append((max(change.at, start), ready, target))
    if not steps or steps[0][0] > start:
        steps.insert(0, (start, 0, 0))
    steps.append((end, ready, target))
    return steps


@dataclass
class AccountCost:
    account: object
    month_to_date: Decimal
    budget: object | None  # quotas.Budget
    days: list[tuple[datetime, float]]  # (day start, cost) for each of the last COST_DAYS days

    @property
    def used_percent(self) -> int | None:
        return None if self.budget is None else int(100 * self.month_to_date / self.budget.monthly_limit)


COST_DAYS = 30
COST_ACCOUNTS = 20


def costs_overview(now: datetime | None = None) -> list[AccountCost]:
    """The accounts that spent most this month, each with its budget and a daily series over the last
    ``COST_DAYS`` days. Three queries."""
    now = now or timezone.now()
    month = month_start(now)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - timedelta(days=COST_DAYS - 1)
    top = list(CostHour.objects.filter(hour__gte=month).values("account").annotate(total=Sum("cost"))
               .order_by("-total", "account")[:COST_ACCOUNTS])
    ids = [row["account"] for row in top]
    accounts = {a.pk: a for a in Account.objects.filter(pk__in=ids).select_related("budget")}
    daily: dict[int, dict] = {pk: {} for pk in ids}
    for row in (CostHour.objects.filter(account__in=ids, hour__gte=first_day).annotate(day=TruncDay("hour"))
                .values("account", "day").annotate(total=Sum("cost")).order_by()):
        daily[row["account"]][row["day"]] = float(row["total"])
    days = [first_day + timedelta(days=i) for i in range(COST_DAYS)]
    return [AccountCost(accounts[row["account"]], row["total"], getattr(accounts[row["account"]], "budget", None),
                        [(d, daily[row["account"]].get(d, 0.0)) for d in days]) for row in top]
