"""What an account's endpoints hold against its quotas, and admission of a new holding.

The limits are ``quotas``'; what is held is a sum over this app's rows, so usage and admission live here.
"""

from django.db import transaction
from django.db.models import Case, F, IntegerField, Subquery, Sum, When
from django.db.models.functions import Coalesce

from controlplane.models import Account
from quotas.errors import QuotaExceeded
from quotas.models import Accelerator, InstanceType
from quotas.selectors import UNIT, catalog_list, quota_limits

from .budgets import BudgetExhausted, budget_refuses
from .models import Endpoint, Intent


def _units():
    return Case(When(instance__accelerator="cpu", then=F("instance__vcpus")),
                default=F("instance__accelerator_count"), output_field=IntegerField())


# What one endpoint holds, in replicas: its largest maxReplica over the base and every schedule window
# (``Endpoint.held_replica``, kept by the spec services with ``endpoints.schedules.held_replica``). Every sum
# and admission below counts this and nothing else, so a window can never run more than was admitted.
HELD = F("held_replica")


def _holding(rows):
    """The endpoints of ``rows`` that hold quota: all but the paused. Scaled-to-zero endpoints count (as on
    HF); a deleting endpoint counts until its row is gone."""
    return rows.exclude(intent=Intent.PAUSE)


def held_units(*, account, accelerator) -> Subquery:
    """The units ``account`` holds for ``accelerator`` (both may be ``OuterRef``s), as one subquery: for
    listing many quotas in one query."""
    rows = _holding(Endpoint.objects.filter(account=account, instance__accelerator=accelerator))
    total = rows.values("account").annotate(units=Sum(HELD * _units())).values("units")
    return Coalesce(Subquery(total, output_field=IntegerField()), 0)


def quota_usage(*, account: Account, exclude_endpoint_id: int | None = None) -> dict[str, int]:
    """Units held per accelerator: Σ held replicas × units per replica over the endpoints holding quota."""
    rows = _holding(Endpoint.objects.filter(account=account))
    if exclude_endpoint_id is not None:
        rows = rows.exclude(pk=exclude_endpoint_id)
    usage = {acc: 0 for acc in Accelerator.values}
    for row in rows.values("instance__accelerator").annotate(units=Sum(HELD * _units())).order_by():
        usage[row["instance__accelerator"]] = row["units"] or 0
    return usage


def quota_breakdown(*, account: Account) -> list[dict]:
    """Per-endpoint holdings for the quota API."""
    rows = (Endpoint.objects.filter(account=account).select_related("instance").order_by("name"))
    return [{"name": ep.name, "accelerator": ep.instance.accelerator, "instance": ep.instance.compute_id,
             "maxReplica": ep.max_replica, "heldReplica": ep.held_replica, "unitsPerReplica": ep.instance.quota_units,
             "units": 0 if ep.intent == Intent.PAUSE else ep.held_replica * ep.instance.quota_units,
             "state": ep.state} for ep in rows]


def _held_by(endpoint_id: int | None) -> int:
    """The units one endpoint holds now (0 for a new or paused one)."""
    if endpoint_id is None:
        return 0
    rows = _holding(Endpoint.objects.filter(pk=endpoint_id)).annotate(units=HELD * _units())
    return rows.values_list("units", flat=True).first() or 0


def quota_reserve(*, account: Account, instance: InstanceType, max_replica: int,
                  endpoint_id: int | None = None) -> None:
    """Admit ``max_replica`` replicas of ``instance`` for an endpoint of ``account``, or raise QuotaExceeded.
    Callers pass what the endpoint will hold (``held_replica``: schedules included).

    Must run inside the transaction that writes the spec, after the caller took the account's row lock
    (``controlplane.locks.account_lock``; every spec service takes it first, for its name and state checks
    too), so concurrent admissions for one account are serialised and can never over-admit. ``endpoint_id`` excludes that
    endpoint's current holding (an update replaces it). Raises BudgetExhausted instead when the account's
    budget refuses scale-ups and this would hold more than the endpoint does now. Writes nothing.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quota_reserve must run inside the spec change's transaction")
    accelerator = instance.accelerator
    limit = quota_limits(account=account)[accelerator]
    used = quota_usage(account=account, exclude_endpoint_id=endpoint_id)[accelerator]
    need = max_replica * instance.quota_units
    if budget_refuses(account=account) and need > _held_by(endpoint_id):
        raise BudgetExhausted(f"The monthly budget of '{account.slug}' is spent: nothing that holds more is "
                              f"admitted until the month ends or the budget is raised")
    if used + need > limit:
        unit = UNIT[accelerator]
        raise QuotaExceeded(
            f"Quota exceeded for {accelerator} in '{account.slug}': limit {limit} {unit}, "
            f"in use {used}, this request needs {need} ({max_replica} × {instance.compute_id})",
            accelerator=accelerator, limit=limit, usage=used, need=need,
        )


def _availability(statuses: set[str]) -> str:
    return "available" if statuses & {"available", "low_availability"} else "not_available"


def hardware_tree(*, account: Account) -> dict:
    """``GET /v2/provider/{ns}``: every vendor, region and compute in the catalog, each compute with the
    account's limit and holding in its own units (vCPUs for CPU computes, devices otherwise)."""
    limits, usage = quota_limits(account=account), quota_usage(account=account)
    vendors: dict[str, dict[str, dict]] = {}
    for it in catalog_list():
        region = vendors.setdefault(it.vendor, {}).setdefault(
            it.region, {"name": it.region, "label": it.region_label or it.region, "computes": []})
        region["computes"].append({
            "id": it.compute_id, "accelerator": it.accelerator, "numAccelerators": it.quota_units,
            "numCpus": it.vcpus, "memoryGb": float(it.memory_gb), "gpuMemoryGb": it.accelerator_memory_gb,
            "instanceType": it.instance_type, "instanceSize": it.instance_size,
            "architecture": it.architecture, "status": it.status, "pricePerHour": float(it.price_per_hour),
            "quota": {"maxAccelerators": limits[it.accelerator], "usedAccelerators": usage[it.accelerator]},
        })
    return {"vendors": [
        {"name": vendor, "status": _availability({c["status"] for r in regions.values() for c in r["computes"]}),
         "regions": [{**r, "status": _availability({c["status"] for c in r["computes"]})} for r in regions.values()]}
        for vendor, regions in vendors.items()
    ]}


def quota_status(*, account: Account) -> dict:
    """``GET /v2/quotas/{ns}``: limit, holding and headroom per accelerator, and each endpoint's holding."""
    limits, usage = quota_limits(account=account), quota_usage(account=account)
    return {
        "namespace": account.slug,
        "quotas": [{"accelerator": acc, "unit": UNIT[acc], "limit": limits[acc], "used": usage[acc],
                    "available": max(limits[acc] - usage[acc], 0)} for acc in limits],
        "endpoints": quota_breakdown(account=account),
    }
