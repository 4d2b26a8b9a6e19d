"""Budgets acted on: after each accrual, every account's month-to-date cost against its budget.

At ``notify_percent`` of the budget the account is told once a month (an audit record and the
``budget.threshold`` notice); at 100 % the budget's action runs once a month: ``pause`` pauses every
running endpoint not tagged ``essential`` through the pause service (audited, told to the gateway),
``refuse`` marks the budget exhausted so that admission refuses anything that would hold more
(``budget_admits``), ``notify`` only tells. The marks live on the budget row (``notified_month``,
``exhausted_month``), taken under its row lock, so concurrent runs act once.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import DecimalField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from controlplane.errorcodes import Code
from controlplane.errors import Conflict, DomainError
from controlplane.models import Account
from controlplane.services import audit_record
from controlplane.webhooks import events as webhook_events
from quotas.models import Budget

from .costs import month_start, month_to_date
from .models import CostHour, Endpoint, Intent

log = logging.getLogger(__name__)
ESSENTIAL_TAG = "essential"


class BudgetExhausted(DomainError):
    status_code = 403
    code = Code.BUDGET_EXHAUSTED
    message = "The account's monthly budget is spent"


@dataclass
class Enforced:
    notified: list[str] = field(default_factory=list)  # account slugs told of the threshold
    exhausted: list[str] = field(default_factory=list)  # account slugs whose budget ran out
    paused: list[str] = field(default_factory=list)  # "account/endpoint" paused for it


def _spent_this_month(since: datetime):
    rows = (CostHour.objects.filter(account=OuterRef("account"), hour__gte=since).values("account")
            .annotate(total=Sum("cost")).values("total"))
    return Coalesce(Subquery(rows, output_field=DecimalField()), Decimal(0), output_field=DecimalField())


def budgets_enforce(*, now: datetime | None = None) -> Enforced:
    """Compare each budget with the month's accrued cost and act on crossings not yet acted on this month."""
    now = now or timezone.now()
    month = month_start(now)
    done = Enforced()
    candidates = Budget.objects.annotate(spent=_spent_this_month(month)).select_related("account")
    for budget in candidates:
        notify_at = budget.monthly_limit * budget.notify_percent / 100
        due_notice = budget.spent >= notify_at and budget.notified_month != month.date()
        due_action = budget.spent >= budget.monthly_limit and budget.exhausted_month != month.date()
        if due_notice or due_action:
            _act(budget.pk, month, done)
    return done


@transaction.atomic
def _act(budget_id: int, month: datetime, done: Enforced) -> None:
    budget = Budget.objects.select_for_update().select_related("account").get(pk=budget_id)
    account = budget.account
    spent = month_to_date(account=account, now=month)
    figures = {"spent": str(spent), "monthlyLimit": str(budget.monthly_limit), "month": month.date().isoformat()}
    if spent >= budget.monthly_limit * budget.notify_percent / 100 and budget.notified_month != month.date():
        budget.notified_month = month.date()
        audit_record(actor=None, action="budget.threshold", account=account, target=f"{budget.notify_percent}%",
                     diff=figures)
        _threshold_webhook(budget, spent, budget.notify_percent)
        done.notified.append(account.slug)
    if spent >= budget.monthly_limit and budget.exhausted_month != month.date():
        budget.exhausted_month = month.date()
        audit_record(actor=None, action="budget.exhausted", account=account, target=budget.action, diff=figures)
        if budget.notify_percent < 100:  # at 100 % the notice above was this same crossing
            _threshold_webhook(budget, spent, 100, action=budget.action)
        done.exhausted.append(account.slug)
        if budget.action == Budget.Action.PAUSE:
            _pause_non_essential(account, done)
    budget.save(update_fields=["notified_month", "exhausted_month"])
    log.info("budget %s: spent %s of %s this month (%s)", account.slug, spent, budget.monthly_limit, budget.action)


def _threshold_webhook(budget: Budget, spent, percent: int, action: str | None = None) -> None:
    """The ``budget.threshold`` webhook, in the transaction that records the crossing."""
    webhook_events.budget_threshold_emit(account=budget.account, budget="monthly", threshold_percent=percent,
                                         spent=float(spent), limit=float(budget.monthly_limit), action=action)


def _pause_non_essential(account: Account, done: Enforced) -> None:
    from .rollouts import rollout_abort
    from .services import endpoint_pause

    message = "Endpoint paused: the account's monthly budget is spent"
    for endpoint in Endpoint.objects.filter(account=account, intent=Intent.RUN).order_by("name"):
        if ESSENTIAL_TAG in (endpoint.tags or []):
            continue
        try:
            endpoint_pause(account=account, name=endpoint.name, actor=None, message=message)
        except Conflict as exc:
            if exc.code != Code.ROLLOUT_IN_PROGRESS:
                raise
            # A spent budget outranks a canary: it is rolled back (the stable's spec stays), then paused.
            rollout_abort(account=account, name=endpoint.name, actor=None, reason="the monthly budget is spent")
            endpoint_pause(account=account, name=endpoint.name, actor=None, message=message)
        done.paused.append(f"{account.slug}/{endpoint.name}")


def budget_refuses(*, account: Account, now: datetime | None = None) -> bool:
    """True when the account's budget has action ``refuse`` and is spent this month: admission then refuses
    whatever would hold more than it holds now. One query."""
    month = month_start(now or timezone.now()).date()
    return Budget.objects.filter(account=account, action=Budget.Action.REFUSE, exhausted_month=month).exists()
