"""Quota-increase requests. The hardware listing and the quota API show what endpoints hold:
``endpoints.quota_views``."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.models import Role
from controlplane.views import body_error_responses, caller_account, error_responses

from . import selectors, services
from .serializers import (
    QuotaRequestCreateSerializer,
    QuotaRequestListSerializer,
    QuotaRequestSerializer,
)


class QuotaRequestsView(APIView):
    """Quota-increase requests. Members can read them; only admins of the account (the owner of a
    personal account, an org's admins) can file one."""

    @extend_schema(operation_id="quota_request_list", tags=["quotas"],
                   responses={200: QuotaRequestListSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        return Response(QuotaRequestListSerializer({"items": selectors.quota_request_list(account=account)}).data)

    @extend_schema(operation_id="quota_request_create", tags=["quotas"], request=QuotaRequestCreateSerializer,
                   responses={201: QuotaRequestSerializer, **body_error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.ADMIN)
        data = QuotaRequestCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.quota_request_create(account=account, accelerator=data.validated_data["accelerator"],
                                                requested_limit=data.validated_data["limit"],
                                                reason=data.validated_data["reason"], actor=request.user)
        return Response(QuotaRequestSerializer(created).data, status=201)
