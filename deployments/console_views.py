"""The operator console's pages, inside the admin (its login, its styles, its permissions).

- ``/admin/console/``: the overview (``deployments.console.overview``), with approve / reject on pending
  quota requests;
- ``/admin/console/costs/``: the accounts that spent most this month, with their budgets and daily charts;
- ``/admin/console/endpoint/<id>/``: one endpoint: status, replica timeline, request rate, error rate and
  latency percentiles from the gateway, recent events, and pause / resume / scale to zero / delete.

Reading needs the admin's view permission on endpoints; each action needs the change (delete: delete)
permission on what it changes. Actions are POST only (CSRF-checked), go through the same services as the
API (quota-checked, audited, told to the gateway), and answer a message, never a 500, when the service
refuses (e.g. resuming a running endpoint).
"""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from redis import RedisError

from controlplane.errors import DomainError
from endpoints import services as endpoint_services
from endpoints.models import Endpoint, EndpointEvent
from endpoints.traffic import traffic_series
from quotas.models import QuotaRequest
from quotas.services import quota_request_decide

from .charts import Series, time_chart
from .console import COST_DAYS, costs_overview, overview, replica_timeline, state_since

WINDOW = timedelta(hours=1)
TIMELINE_WINDOW = timedelta(hours=24)
ACTIONS = {  # action -> (service, permission it needs, button label, past tense for the message)
    "pause": (endpoint_services.endpoint_pause, "endpoints.change_endpoint", "Pause", "paused"),
    "resume": (endpoint_services.endpoint_resume, "endpoints.change_endpoint", "Resume", "resumed"),
    "scale-to-zero": (endpoint_services.endpoint_scale_to_zero, "endpoints.change_endpoint", "Scale to zero",
                      "scaled to zero"),
    "delete": (endpoint_services.endpoint_delete, "endpoints.delete_endpoint", "Delete", "being deleted"),
}


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def overview_view(request: HttpRequest) -> HttpResponse:
    _require(request, "endpoints.view_endpoint")
    context = {**admin.site.each_context(request), "title": "Operator console", "data": overview(),
               "can_decide": request.user.has_perm("quotas.change_quotarequest")}
    return TemplateResponse(request, "console/overview.html", context)


def costs_view(request: HttpRequest) -> HttpResponse:
    """The accounts that spent most this month: month-to-date against the budget, a daily chart each."""
    _require(request, "endpoints.view_endpoint")
    now = timezone.now()
    rows = costs_overview(now)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=COST_DAYS - 1)
    charts = [time_chart(f"{row.account.slug}: USD per day, last {COST_DAYS} days",
                         [Series("USD/day", row.days)], start, now, unit="USD", step=True) for row in rows]
    context = {**admin.site.each_context(request), "title": "Costs this month", "rows": list(zip(rows, charts,
                                                                                              strict=True))}
    return TemplateResponse(request, "console/costs.html", context)


def endpoint_view(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    _require(request, "endpoints.view_endpoint")
    endpoint = get_object_or_404(Endpoint.objects.select_related("account", "instance")
                                 .annotate(since=state_since()), pk=endpoint_id)
    now = timezone.now()
    steps = replica_timeline(endpoint, now - TIMELINE_WINDOW, now)
    try:
        points = traffic_series(endpoint.pk, now - WINDOW, now)
        traffic_error = ""
    except RedisError as exc:  # the page still shows status, replicas and events
        points, traffic_error = [], f"The gateway's traffic figures cannot be read: {type(exc).__name__}"
    at = [p["minute"] for p in points]
    charts = [
        time_chart("Replicas, last 24 hours", [Series("ready", [(s[0], s[1]) for s in steps]),
                                               Series("target", [(s[0], s[2]) for s in steps])],
                   now - TIMELINE_WINDOW, now, step=True),
        time_chart("Request rate, last hour", [Series("requests/s", [(m, p["requests"] / 60) for m, p in
                                                                      zip(at, points, strict=True)])],
                   now - WINDOW, now, unit="req/s"),
        time_chart("Error rate (5xx), last hour", [Series("5xx %", [
            (m, 100 * p["errors"] / p["requests"] if p["requests"] else None) for m, p in zip(at, points, strict=True)])],
                   now - WINDOW, now, unit="%"),
        time_chart("Latency, last hour", [Series(f"p{q}", [(m, p[f"p{q}_ms"]) for m, p in zip(at, points, strict=True)])
                                          for q in (50, 95, 99)],
                   now - WINDOW, now, unit="ms"),
    ]
    context = {**admin.site.each_context(request), "title": f"{endpoint.account.slug}/{endpoint.name}",
               "endpoint": endpoint, "charts": charts, "now": now,
               "requests_last_hour": sum(p["requests"] for p in points), "traffic_error": traffic_error,
               "events": EndpointEvent.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")[:20],
               "actions": [(name, label) for name, (_, permission, label, _) in ACTIONS.items()
                           if request.user.has_perm(permission)]}
    return TemplateResponse(request, "console/endpoint.html", context)


@require_POST
def endpoint_action_view(request: HttpRequest, endpoint_id: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        return HttpResponse(f"Unknown action '{action}'", status=404, content_type="text/plain")
    service, permission, _, verb = ACTIONS[action]
    _require(request, permission)
    endpoint = get_object_or_404(Endpoint.objects.select_related("account"), pk=endpoint_id)
    label = f"{endpoint.account.slug}/{endpoint.name}"
    try:
        service(account=endpoint.account, name=endpoint.name, actor=request.user)
    except DomainError as exc:
        messages.warning(request, f"{label}: {exc.detail}")
    else:
        messages.success(request, f"{label} is {verb}.")
    if action == "delete" and not Endpoint.objects.filter(pk=endpoint_id).exists():
        return HttpResponseRedirect(reverse("console"))
    return HttpResponseRedirect(reverse("console-endpoint", args=[endpoint_id]))


@require_POST
def quota_request_view(request: HttpRequest, request_id: int, decision: str) -> HttpResponse:
    _require(request, "quotas.change_quotarequest")
    if decision not in ("approve", "reject"):
        return HttpResponse(f"Unknown decision '{decision}'", status=404, content_type="text/plain")
    note = request.POST.get("note", "")[:500]
    try:
        decided = quota_request_decide(request_id=request_id, approve=decision == "approve", actor=request.user,
                                       note=note)
    except DomainError as exc:
        messages.warning(request, str(exc.detail))
    except QuotaRequest.DoesNotExist:
        messages.warning(request, f"No quota request {request_id}")
    else:
        messages.success(request, f"Quota request of {decided.account.slug} for {decided.requested_limit} "
                                  f"{decided.accelerator} {decided.status}.")
    return HttpResponseRedirect(reverse("console"))
