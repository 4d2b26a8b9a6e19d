"""Subscription writes: create, change, delete, rotate the secret, redeliver. Each is atomic and audited
(the audit diff names what changed, never the secret)."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from ..encryption import encrypt_json
from ..errorcodes import Code
from ..errors import Conflict, InvalidSpec, NotFound
from ..locks import account_lock
from ..models import Account, WebhookDelivery, WebhookSubscription
from ..services import audit_record
from . import signing
from .addresses import AddressRefused, resolve
from .events import ALL, EVENT_TYPES, queue_on_commit

DESCRIPTION_MAX = 256


class WebhookNotFound(NotFound):
    code = Code.WEBHOOK_NOT_FOUND
    message = "Webhook not found"


def _check_url(url) -> str:
    try:
        resolve(url)
    except AddressRefused as exc:
        raise InvalidSpec(f"url: {exc}", fields={"url": [str(exc)]}) from exc
    return url


def _check_events(events) -> list[str]:
    if events is None:
        return [ALL]
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidSpec("events: a non-empty list of event types, or [\"*\"] for all",
                          fields={"events": ["a non-empty list of event types, or [\"*\"] for all"]})
    unknown = sorted(set(events) - {ALL, *EVENT_TYPES})
    if unknown:
        raise InvalidSpec(f"events: unknown event type {unknown[0][:64]!r}",
                          fields={"events": [f"unknown: {', '.join(u[:64] for u in unknown[:5])}; known: "
                                             f"{', '.join(EVENT_TYPES)} or *"]})
    return [ALL] if ALL in events else sorted(set(events))


def _check_description(description) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        raise InvalidSpec("description: at most 256 characters", fields={"description": ["at most 256 characters"]})
    return description


def webhook_create(*, account: Account, url: str, events: list[str] | None = None, description: str = "",
                   actor: AbstractBaseUser | None = None) -> tuple[WebhookSubscription, str]:
    """Subscribe ``url`` to ``events`` of ``account`` (None or ``["*"]``: every type). Returns the subscription
    and its signing secret, which no read returns again.

    Raises InvalidSpec naming ``url`` (not http(s), or an address webhooks may not reach), ``events`` or
    ``description``; Conflict ``webhook_limit`` past MAX_WEBHOOKS_PER_ACCOUNT. Writes nothing on error."""
    events, description = _check_events(events), _check_description(description)
    _check_url(url)  # before the transaction: a slow DNS answer holds no lock and no transaction open
    secret = signing.secret_generate()
    with transaction.atomic():
        account_lock(account=account)  # serialises the limit check
        if WebhookSubscription.objects.filter(account=account).count() >= settings.MAX_WEBHOOKS_PER_ACCOUNT:
            raise Conflict(f"'{account.slug}' already has the maximum of {settings.MAX_WEBHOOKS_PER_ACCOUNT} "
                           "webhooks", code=Code.WEBHOOK_LIMIT)
        subscription = WebhookSubscription.objects.create(
            account=account, url=url, events=events, description=description,
            secret_encrypted=encrypt_json({"secret": secret}),
            created_by=actor if actor is not None and actor.is_authenticated else None)
        audit_record(actor=actor, action="webhook.create", account=account, target=str(subscription.pk),
                     diff={"url": [None, url], "events": [None, events]})
    return subscription, secret


def _locked(account: Account, webhook_id: int) -> WebhookSubscription:
    subscription = WebhookSubscription.objects.select_for_update().filter(account=account, pk=webhook_id).first()
    if subscription is None:
        raise WebhookNotFound()
    return subscription


def webhook_update(*, account: Account, webhook_id: int, changes: dict,
                   actor: AbstractBaseUser | None = None) -> WebhookSubscription:
    """Change ``url``, ``events``, ``description`` or ``enabled`` (keys absent stay). Enabling a disabled
    subscription clears its failure count, and its pending deliveries are sent again. Raises as create,
    plus WebhookNotFound."""
    if "url" in changes:  # before the transaction, as in create
        _check_url(changes["url"])
    with transaction.atomic():
        return _update(account, webhook_id, changes, actor)


def _update(account: Account, webhook_id: int, changes: dict, actor) -> WebhookSubscription:
    subscription = _locked(account, webhook_id)
    new = {}
    if "url" in changes:
        new["url"] = changes["url"]
    if "events" in changes:
        new["events"] = _check_events(changes["events"])
    if "description" in changes:
        new["description"] = _check_description(changes["description"])
    if "enabled" in changes:
        if not isinstance(changes["enabled"], bool):
            raise InvalidSpec("enabled: true or false", fields={"enabled": ["true or false"]})
        new["enabled"] = changes["enabled"]
    diff = {key: [getattr(subscription, key), value] for key, value in new.items() if getattr(subscription, key) != value}
    if not diff:
        return subscription
    for key, value in new.items():
        setattr(subscription, key, value)
    if diff.get("enabled") == [False, True]:
        subscription.consecutive_failures, subscription.disabled_reason = 0, ""
        due = list(subscription.deliveries.filter(status=WebhookDelivery.Status.PENDING).values_list("pk", flat=True))
        queue_on_commit(due)
    elif diff.get("enabled") == [True, False]:
        subscription.disabled_reason = "Disabled by a user"
    subscription.updated_at = timezone.now()
    subscription.save()
    audit_record(actor=actor, action="webhook.update", account=account, target=str(subscription.pk), diff=diff)
    return subscription


@transaction.atomic
def webhook_delete(*, account: Account, webhook_id: int, actor: AbstractBaseUser | None = None) -> None:
    """Delete the subscription with its deliveries and their log (nothing more is sent)."""
    subscription = _locked(account, webhook_id)
    url = subscription.url
    subscription.delete()
    audit_record(actor=actor, action="webhook.delete", account=account, target=str(webhook_id), diff={"url": [url, None]})


@transaction.atomic
def webhook_secret_rotate(*, account: Account, webhook_id: int,
                          actor: AbstractBaseUser | None = None) -> tuple[WebhookSubscription, str]:
    """A new signing secret, returned once; every attempt from now on (retries included) is signed with it."""
    subscription = _locked(account, webhook_id)
    secret = signing.secret_generate()
    subscription.secret_encrypted = encrypt_json({"secret": secret})
    subscription.updated_at = timezone.now()
    subscription.save(update_fields=["secret_encrypted", "updated_at"])
    audit_record(actor=actor, action="webhook.rotate_secret", account=account, target=str(webhook_id),
                 diff={"secret": ["(set)", "(rotated)"]})
    return subscription, secret


@transaction.atomic
def webhook_redeliver(*, account: Account | None, delivery_id: int, webhook_id: int | None = None,
                      actor: AbstractBaseUser | None = None) -> WebhookDelivery:
    """Send a delivery again now (same ``webhook-id`` and body), whatever its status, with a fresh retry
    window; queued after commit. ``account``/``webhook_id`` scope the lookup (None: an operator, any).
    Raises WebhookNotFound, or Conflict ``webhook_disabled`` when its subscription is disabled."""
    rows = WebhookDelivery.objects.select_for_update(of=("self",)).select_related("subscription__account")
    if account is not None:
        rows = rows.filter(subscription__account=account)
    if webhook_id is not None:
        rows = rows.filter(subscription_id=webhook_id)
    delivery = rows.filter(pk=delivery_id).first()
    if delivery is None:
        raise WebhookNotFound("Delivery not found")
    if not delivery.subscription.enabled:
        raise Conflict("The webhook is disabled; enable it first (PATCH enabled: true)", code=Code.WEBHOOK_DISABLED)
    now = timezone.now()
    old_status = delivery.status
    delivery.status, delivery.next_attempt_at, delivery.manual = WebhookDelivery.Status.PENDING, now, True
    delivery.retry_until = now + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS)
    delivery.save(update_fields=["status", "next_attempt_at", "manual", "retry_until"])
    queue_on_commit([delivery.pk])
    audit_record(actor=actor, action="webhook.redeliver", account=delivery.subscription.account,
                 target=f"{delivery.subscription_id}/{delivery.message_id}", diff={"status": [old_status, "pending"]})
    return delivery
