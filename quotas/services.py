"""Quota writes: defaults for new accounts, admission, operator limits and increase requests."""

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from controlplane.errorcodes import Code
from controlplane.errors import Conflict, InvalidSpec
from controlplane.locks import account_lock
from controlplane.models import Account
from controlplane.services import audit_record
from controlplane.webhooks import events as webhook_events

from .models import Accelerator, Budget, InstanceType, Quota, QuotaRequest
from .selectors import default_limit, quota_limits

CENTS = Decimal("0.01")


def quota_defaults_create(*, account: Account) -> None:
    """Give a new account one quota row per accelerator with the configured defaults. Idempotent."""
    for accelerator in Accelerator.values:
        Quota.objects.get_or_create(account=account, accelerator=accelerator,
                                    defaults={"limit": default_limit(accelerator)})


def quota_defaults_on_create(sender, instance: Account, created: bool, raw: bool = False, **_kwargs) -> None:
    """``post_save`` receiver for accounts: a new one gets its default quotas (not when loading fixtures)."""
    if created and not raw:
        quota_defaults_create(account=instance)


@transaction.atomic
def quota_set(*, account: Account, accelerator: str, limit: int, actor: AbstractBaseUser | None = None) -> Quota:
    """Set an account's limit (operators). Lowering below usage is allowed: it blocks new admissions only."""
    if accelerator not in Accelerator.values:
        raise InvalidSpec(f"Unknown accelerator '{accelerator}'", fields={"accelerator": ["cpu, gpu or neuron"]})
    if limit < 0:
        raise InvalidSpec("The limit cannot be negative", fields={"limit": ["must be >= 0"]})
    account_lock(account=account)
    quota, created = Quota.objects.get_or_create(account=account, accelerator=accelerator,
                                                 defaults={"limit": limit})
    old = None if created else quota.limit
    if not created and quota.limit != limit:
        quota.limit, quota.updated_at = limit, timezone.now()
        quota.save(update_fields=["limit", "updated_at"])
    if old != limit:
        audit_record(actor=actor, action="quota.set", account=account, target=accelerator, diff={"limit": [old, limit]})
    return quota


@transaction.atomic
def budget_set(*, account: Account, monthly_limit, notify_percent: int = 80, action: str = Budget.Action.NOTIFY,
               actor: AbstractBaseUser | None = None) -> Budget:
    """Set (or replace) the account's monthly budget (an amount in USD, a ``Decimal``). A changed budget
    re-arms the month's notice and lifts the exhaustion (the next accrual acts again if the new limit is
    passed too); setting the same values again changes nothing."""
    fields = {}
    if monthly_limit is None or monthly_limit <= 0:
        fields["monthlyLimit"] = ["must be more than 0"]
    if not 1 <= notify_percent <= 100:
        fields["notifyPercent"] = ["must be between 1 and 100"]
    if action not in Budget.Action.values:
        fields["action"] = [f"one of {', '.join(Budget.Action.values)}"]
    if fields:
        raise InvalidSpec("Invalid budget", fields=fields)
    monthly_limit = Decimal(monthly_limit).quantize(CENTS)  # as stored, so an unchanged budget compares equal
    account_lock(account=account)
    budget = Budget.objects.filter(account=account).first()
    old = {"monthlyLimit": str(budget.monthly_limit), "notifyPercent": budget.notify_percent,
           "action": budget.action} if budget else None
    budget = budget or Budget(account=account)
    budget.monthly_limit, budget.notify_percent, budget.action = monthly_limit, notify_percent, action
    new = {"monthlyLimit": str(budget.monthly_limit), "notifyPercent": notify_percent, "action": action}
    if old != new:
        budget.notified_month = budget.exhausted_month = None
        budget.updated_at = timezone.now()
        budget.save()
        audit_record(actor=actor, action="budget.set", account=account, target="budget",
                     diff={k: [(old or {}).get(k), v] for k, v in new.items() if (old or {}).get(k) != v})
    return budget


@transaction.atomic
def budget_clear(*, account: Account, actor: AbstractBaseUser | None = None) -> bool:
    """Remove the account's budget; False if it had none."""
    deleted, _ = Budget.objects.filter(account=account).delete()
    if deleted:
        audit_record(actor=actor, action="budget.clear", account=account, target="budget")
    return bool(deleted)


@transaction.atomic
def quota_request_create(*, account: Account, accelerator: str, requested_limit: int, reason: str,
                         actor: AbstractBaseUser) -> QuotaRequest:
    """Ask operators for a higher limit. One pending request per accelerator at a time."""
    account_lock(account=account)
    if QuotaRequest.objects.filter(account=account, accelerator=accelerator, status=QuotaRequest.Status.PENDING).exists():
        raise Conflict(f"A {accelerator} quota request for '{account.slug}' is already pending", code=Code.REQUEST_PENDING)
    current = quota_limits(account=account)[accelerator]
    if requested_limit <= current:
        raise InvalidSpec(f"The requested limit must exceed the current limit ({current})",
                          fields={"limit": [f"must be greater than {current}"]})
    request = QuotaRequest.objects.create(account=account, accelerator=accelerator, requested_limit=requested_limit,
                                          reason=reason, requested_by=actor)
    audit_record(actor=actor, action="quota_request.create", account=account, target=accelerator,
                 diff={"requestedLimit": [current, requested_limit]})
    return request


@transaction.atomic
def quota_request_decide(*, request_id: int, approve: bool, actor: AbstractBaseUser, note: str = "") -> QuotaRequest:
    """Approve (sets the limit) or reject a pending request, recording who and when. Conflict if decided."""
    request = QuotaRequest.objects.select_for_update().select_related("account").get(pk=request_id)
    if request.status != QuotaRequest.Status.PENDING:
        raise Conflict(f"This request was already {request.status}", code=Code.ALREADY_DECIDED)
    request.status = QuotaRequest.Status.APPROVED if approve else QuotaRequest.Status.REJECTED
    request.decided_by, request.decided_at, request.decision_note = actor, timezone.now(), note
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    if approve:
        quota_set(account=request.account, accelerator=request.accelerator, limit=request.requested_limit, actor=actor)
    audit_record(actor=actor, action=f"quota_request.{request.status}", account=request.account,
                 target=request.accelerator, diff={"status": ["pending", request.status]})
    webhook_events.emit(account=request.account, event_type=webhook_events.QUOTA_REQUEST_DECIDED, data={
        "namespace": request.account.slug, "requestId": request.pk, "accelerator": request.accelerator,
        "requestedLimit": request.requested_limit, "status": request.status, "note": note,
        "decidedBy": getattr(actor, "username", None) or "system"})
    return request


def catalog_seed() -> int:
    """Load the public price table into an empty catalog (a fresh or flushed database); returns rows added."""
    from .seed import rows

    if InstanceType.objects.exists():
        return 0
    return len(InstanceType.objects.bulk_create(InstanceType(**row) for row in rows()))
