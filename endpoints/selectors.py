"""Endpoint reads, always scoped to one account; list queries are constant in number."""

from django.db.models import DecimalField, OuterRef, Subquery, Sum
from django.utils import timezone

from controlplane.models import Account

from .costs import month_start
from .errors import EndpointNotFound
from .models import CostHour, Endpoint, EndpointEvent, EndpointRevision


def _base():
    """Endpoints with what ``endpoint_body`` reads: their instance, creators, account, rollout, and ``month_cost``
    (the ledger's sum for the endpoint's name this month; a subquery, not a query per row)."""
    month = (CostHour.objects.filter(account=OuterRef("account"), endpoint_name=OuterRef("name"),
                                     hour__gte=month_start(timezone.now()))
             .values("account").annotate(total=Sum("cost")).values("total"))
    return (Endpoint.objects.select_related("instance", "created_by", "updated_by", "account", "rollout")
            .annotate(month_cost=Subquery(month, output_field=DecimalField())))


def endpoint_list(*, account: Account, tag: str | None = None) -> list[Endpoint]:
    rows = _base().filter(account=account).order_by("name")
    if tag:
        rows = rows.filter(tags__contains=[tag])
    return list(rows)


def endpoint_get(*, account: Account, name: str) -> Endpoint:
    """The account's endpoint called ``name``; EndpointNotFound otherwise."""
    endpoint = _base().filter(account=account, name=name).first()
    if endpoint is None:
        raise EndpointNotFound()
    return endpoint


def endpoint_events(*, account: Account, name: str, limit: int = 200) -> list[EndpointEvent]:
    endpoint = endpoint_get(account=account, name=name)
    return list(endpoint.events.order_by("-created_at", "-id")[:limit])[::-1]


def endpoint_revisions(*, account: Account, name: str) -> list[EndpointRevision]:
    """The spec revisions of the account's endpoint ``name``, newest first (EndpointNotFound otherwise)."""
    endpoint = Endpoint.objects.filter(account=account, name=name).only("pk").first()
    if endpoint is None:
        raise EndpointNotFound()
    return list(EndpointRevision.objects.filter(endpoint=endpoint).order_by("-generation"))
