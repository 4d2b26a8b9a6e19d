"""Quota-increase requests. The hardware listing and the quota API show what endpoints hold:
``endpoints.quota_views``."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.models import Role
from controlplane.views import body_error_responses, caller_account, error_responses
from controlplane.wire import iso_z

from . import selectors, services
from .serializers import (
    QuotaRequestCreateSerializer,
    QuotaRequestListSerializer,
    QuotaRequestSerializer,
)


def request_body(r) -> dict:
    return {"id": r.pk, "accelerator": r.accelerator, "limit": r.requested_limit, "reason": r.reason,
            "status": r.status, "requestedBy": r.requested_by.get_username() if r.requested_by else None,
            "createdAt": iso_z(r.created_at), "decidedBy": r.decided_by.get_username() if r.decided_by else None,
            "decidedAt": iso_z(r.decided_at), "decisionNote": r.decision_note}


class QuotaRequestsView(APIView):
    """Quota-increase requests. Members can read them; only admins of the account (the owner of a
    personal account, an org's admins) can file one."""

    @extend_schema(operation_id="quota_request_list", tags=["quotas"],
                   responses={200: QuotaRequestListSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        return Response({"items": [request_body(r) for r in selectors.quota_request_list(account=account)]})

    @extend_schema(operation_id="quota_request_create", tags=["quotas"], request=QuotaRequestCreateSerializer,
                   responses={201: QuotaRequestSerializer, **body_error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.ADMIN)
        data = QuotaRequestCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.quota_request_create(account=account, accelerator=data.validated_data["accelerator"],
                                                requested_limit=data.validated_data["limit"],
                                                reason=data.validated_data["reason"], actor=request.user)
        return Response(request_body(created), status=201)
