"""Endpoint reads, always scoped to one account; list queries are constant in number."""

from controlplane.models import Account

from .errors import EndpointNotFound
from .models import Endpoint, EndpointEvent


def _base():
    return Endpoint.objects.select_related("instance", "created_by", "updated_by", "account")


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
