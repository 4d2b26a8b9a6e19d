"""Webhook reads, always scoped to one account; constant query counts."""

from django.db.models import Prefetch

from ..models import Account, WebhookAttempt, WebhookDelivery, WebhookSubscription
from .services import WebhookNotFound

DELIVERIES_LISTED = 100


def webhook_list(*, account: Account) -> list[WebhookSubscription]:
    return list(WebhookSubscription.objects.filter(account=account).order_by("id"))


def webhook_get(*, account: Account, webhook_id: int) -> WebhookSubscription:
    subscription = WebhookSubscription.objects.filter(account=account, pk=webhook_id).first()
    if subscription is None:
        raise WebhookNotFound()
    return subscription


def delivery_list(*, subscription: WebhookSubscription, limit: int = DELIVERIES_LISTED) -> list[WebhookDelivery]:
    """The subscription's latest deliveries, newest first, each with its attempts (two queries)."""
    attempts = Prefetch("attempts", queryset=WebhookAttempt.objects.order_by("attempted_at", "id"))
    return list(subscription.deliveries.order_by("-created_at", "-id").prefetch_related(attempts)[:limit])
