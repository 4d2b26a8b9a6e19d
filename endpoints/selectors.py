"""Endpoint reads, always scoped to one account; list queries are constant in number."""

from django.contrib.auth import get_user_model
from django.db.models import DecimalField, OuterRef, Subquery, Sum
from django.utils import timezone

from controlplane.models import Account
from quotas.models import InstanceType

from .costs import month_start
from .errors import EndpointNotFound
from .models import CostHour, Endpoint, EndpointEvent, EndpointRevision


def _month_cost():
    """The ledger's sum for the endpoint's name this month: a subquery, not a query per row."""
    return (CostHour.objects.filter(account=OuterRef("account"), endpoint_name=OuterRef("name"),
                                    hour__gte=month_start(timezone.now()))
            .values("account").annotate(total=Sum("cost")).values("total"))


def _base():
    """Endpoints with what ``endpoint_body`` reads, joined: their instance, creators, account, rollout, and
    ``month_cost``."""
    return (Endpoint.objects.select_related("instance", "created_by", "updated_by", "account", "rollout")
            .annotate(month_cost=Subquery(_month_cost(), output_field=DecimalField())))


def endpoint_list(*, account: Account, tag: str | None = None) -> list[Endpoint]:
    """The account's endpoints by name, with what ``endpoint_body`` reads, in at most three queries whatever
    their number: the rows (and rollouts), then their distinct instance types and creators once each.

    A list of a thousand is most often a few instance types and users: fetched once each instead of joined
    into every row, their models are built once, not per endpoint (that building was most of a list's time).
    No column is deferred: Django builds a model with deferred fields markedly slower than a whole one.
    """
    rows = (Endpoint.objects.filter(account=account).select_related("rollout")
            .annotate(month_cost=Subquery(_month_cost(), output_field=DecimalField())).order_by("name"))
    if tag:
        rows = rows.filter(tags__contains=[tag])
    endpoints = list(rows)
    if not endpoints:
        return endpoints
    instances = InstanceType.objects.in_bulk({e.instance_id for e in endpoints})
    user_ids = {e.created_by_id for e in endpoints} | {e.updated_by_id for e in endpoints}
    user_ids.discard(None)
    users = get_user_model().objects.only("pk", "username").in_bulk(user_ids) if user_ids else {}
    for endpoint in endpoints:
        Endpoint.account.field.set_cached_value(endpoint, account)
        Endpoint.instance.field.set_cached_value(endpoint, instances[endpoint.instance_id])
        Endpoint.created_by.field.set_cached_value(endpoint, users.get(endpoint.created_by_id))
        Endpoint.updated_by.field.set_cached_value(endpoint, users.get(endpoint.updated_by_id))
    return endpoints


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
