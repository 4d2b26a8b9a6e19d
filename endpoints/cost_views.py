"""``GET /v2/costs/{ns}`` (the ledger) and ``/v2/budgets/{ns}`` (the account's monthly budget)."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.errors import InvalidSpec, NotFound
from controlplane.models import Account, Role
from controlplane.serializers import EmptySerializer
from controlplane.views import body_error_responses, caller_account, error_responses
from quotas.models import Budget
from quotas.services import budget_clear, budget_set

from .cost_serializers import BudgetInSerializer, BudgetSerializer, CostQuerySerializer, CostReportSerializer
from .costs import CURRENCY, cost_report, month_start, month_to_date


class CostView(APIView):
    @extend_schema(operation_id="cost_report", tags=["costs"],
                   parameters=[OpenApiParameter("from", str, description="ISO 8601; default: the month's start (UTC)"),
                               OpenApiParameter("to", str, description="ISO 8601; default: now"),
                               OpenApiParameter("groupBy", str, enum=["endpoint", "day"])],
                   description="What the account's endpoints cost, from the replicas that ran: ready replicas × "
                               "the instance's price per hour, accrued per hour. Paused and scaled-to-zero time "
                               "costs nothing.",
                   responses={200: CostReportSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        query = CostQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        now = timezone.now()
        start = query.validated_data["from"] or month_start(now)
        end = query.validated_data["to"] or now
        if end <= start:  # a default met a given bound (e.g. only "from", in the future)
            raise InvalidSpec("The report's end must be after its start", fields={"to": ["must be after from"]})
        report = cost_report(account=account, start=start, end=end, group_by=query.validated_data["groupBy"])
        return Response(CostReportSerializer(report).data)


def _budget_body(account: Account, budget: Budget) -> dict:
    month = month_start(timezone.now()).date()
    return {"monthlyLimit": budget.monthly_limit, "notifyPercent": budget.notify_percent, "action": budget.action,
            "currency": CURRENCY, "spentThisMonth": month_to_date(account=account),
            "notified": budget.notified_month == month, "exhausted": budget.exhausted_month == month}


class BudgetView(APIView):
    """Read with any role on the account; set or remove as an account admin (a read token caps the role at
    read, so it can only read)."""

    @extend_schema(operation_id="budget_get", tags=["costs"], responses={200: BudgetSerializer,
                                                                         **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        budget = Budget.objects.filter(account=account).first()
        if budget is None:
            raise NotFound(f"'{account.slug}' has no budget")
        return Response(BudgetSerializer(_budget_body(account, budget)).data)

    @extend_schema(operation_id="budget_set", tags=["costs"], request=BudgetInSerializer,
                   responses={200: BudgetSerializer, **body_error_responses(403, 404)})
    def put(self, request: Request, namespace: str) -> Response:
        data = BudgetInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = caller_account(request, namespace, Role.ADMIN)
        values = data.validated_data
        budget = budget_set(account=account, monthly_limit=values["monthlyLimit"],
                            notify_percent=values["notifyPercent"], action=values["action"], actor=request.user)
        return Response(BudgetSerializer(_budget_body(account, budget)).data)

    @extend_schema(operation_id="budget_clear", tags=["costs"], responses={200: EmptySerializer,
                                                                           **error_responses(403, 404)})
    def delete(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.ADMIN)
        if not budget_clear(account=account, actor=request.user):
            raise NotFound(f"'{account.slug}' has no budget")
        return Response({})
