"""Webhook event types and ``emit``, the one way an event enters the outbox.

``emit`` runs inside the transaction of the change it reports: it writes one ``WebhookDelivery`` per
enabled subscription of the account that wants the type, and after commit queues each for a worker. So
a change that rolls back sends nothing, and a delivery whose message is lost (broker down, worker
killed) is still in Postgres, where the beat sweep finds it.

A payload is ``{"type", "timestamp", "data"}``; ``data`` must never hold a secret (callers pass names,
states and messages, never spec values of ``model.secrets`` or credentials).
"""

import json
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Account, WebhookDelivery, WebhookSubscription
from ..wire import iso_z

ENDPOINT_CREATED = "endpoint.created"
ENDPOINT_UPDATED = "endpoint.updated"
ENDPOINT_DELETED = "endpoint.deleted"
ENDPOINT_STATE_CHANGED = "endpoint.state_changed"
QUOTA_REQUEST_DECIDED = "quota.request_decided"
QUOTA_EXCEEDED = "quota.exceeded"
# Emitted by features still to come, through the hooks at the end of this module.
ROLLOUT_STEP = "rollout.step"
BUDGET_THRESHOLD = "budget.threshold"
EVENT_TYPES = (ENDPOINT_CREATED, ENDPOINT_UPDATED, ENDPOINT_DELETED, ENDPOINT_STATE_CHANGED, QUOTA_REQUEST_DECIDED,
               QUOTA_EXCEEDED, ROLLOUT_STEP, BUDGET_THRESHOLD)
ALL = "*"


def message_id() -> str:
    """A ``webhook-id``: unique per delivery, the same on each of its attempts."""
    return "msg_" + secrets.token_urlsafe(18)


def payload_body(event_type: str, data: dict, at: datetime) -> str:
    """The exact JSON sent (compact, keys in a stable order)."""
    return json.dumps({"type": event_type, "timestamp": iso_z(at), "data": data},
                      separators=(",", ":"), sort_keys=True)


def queue_on_commit(ids: list[int]) -> None:
    """Queue these deliveries for a worker once the current transaction commits (a lost message is found by
    the beat sweep)."""

    def queue() -> None:
        from ..queue import WEBHOOK_DELIVER, enqueue

        for delivery_id in ids:
            enqueue(WEBHOOK_DELIVER, delivery_id)

    transaction.on_commit(queue)


def emit(*, account: Account | int, event_type: str, data: dict, at: datetime | None = None) -> list[WebhookDelivery]:
    """Record ``event_type`` with ``data`` for every enabled subscription of ``account`` that wants it, in the
    caller's transaction (or a transaction of its own); each is queued after commit. Returns the deliveries
    (none when nobody subscribed: one indexed query)."""
    return emit_many(account=account, events=[(event_type, data)], at=at)


def emit_many(*, account: Account | int, events: list[tuple[str, dict]], at: datetime | None = None
              ) -> list[WebhookDelivery]:
    """``emit`` for several ``(event_type, data)`` of one change (e.g. updated and state_changed), with one
    look-up of the account's subscriptions."""
    for event_type, _ in events:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {event_type!r}")
    if not events:
        return []
    account_id = account if isinstance(account, int) else account.pk
    subscriptions = list(WebhookSubscription.objects.filter(account_id=account_id, enabled=True).only("id", "events"))
    if not subscriptions:
        return []
    at = at or timezone.now()
    retry_until = at + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS)
    rows = [WebhookDelivery(subscription_id=s.pk, message_id=message_id(), event_type=event_type,
                            body=payload_body(event_type, data, at), next_attempt_at=at, retry_until=retry_until,
                            created_at=at)
            for event_type, data in events for s in subscriptions if ALL in s.events or event_type in s.events]
    if not rows:
        return []
    with transaction.atomic():
        deliveries = WebhookDelivery.objects.bulk_create(rows)
        queue_on_commit([d.pk for d in deliveries])
    return deliveries


# ---------------------------------------------------------------- hooks for features to come
def rollout_step_emit(*, account: Account, endpoint: str, step: int, total_steps: int, state: str,
                      message: str = "", weights: dict | None = None) -> list[WebhookDelivery]:
    """For progressive rollouts: call inside the transaction that records step ``step`` of ``total_steps``
    of ``endpoint``'s rollout reaching ``state`` (e.g. started, succeeded, rolledBack); ``weights`` maps a
    version to its traffic share."""
    return emit(account=account, event_type=ROLLOUT_STEP, data={
        "namespace": account.slug, "name": endpoint, "step": step, "totalSteps": total_steps, "state": state,
        "message": message, "weights": weights or {}})


def budget_threshold_emit(*, account: Account, budget: str, threshold_percent: int, spent: float, limit: float,
                          currency: str = "USD", action: str | None = None) -> list[WebhookDelivery]:
    """For spending budgets (``endpoints.budgets``): call inside the transaction that records ``account``'s
    ``budget`` crossing ``threshold_percent`` of ``limit`` (``spent`` so far, in ``currency``), once per
    crossing; at 100 % ``action`` says what the budget does now (notify, pause, refuse)."""
    return emit(account=account, event_type=BUDGET_THRESHOLD, data={
        "namespace": account.slug, "budget": budget, "thresholdPercent": threshold_percent, "spent": spent,
        "limit": limit, "currency": currency, "action": action})
