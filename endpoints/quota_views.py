"""The hardware listing the ``hf endpoints hardware`` command reads, and the quota API: both show what the
account's endpoints hold against its limits."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.models import Role
from controlplane.views import caller_account, error_responses
from quotas.serializers import HardwareSerializer, QuotaSerializer

from .quota import hardware_tree, quota_status


class ProviderView(APIView):
    """Every vendor, region and compute in the catalog, each with this account's quota in its own units
    (vCPUs for CPU computes, devices otherwise), so the client can hide what does not fit."""

    @extend_schema(operation_id="provider_list", tags=["hardware"],
                   responses={200: HardwareSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        return Response(hardware_tree(account=caller_account(request, namespace, Role.READ)))


class QuotaView(APIView):
    @extend_schema(operation_id="quota_get", tags=["quotas"], responses={200: QuotaSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        return Response(quota_status(account=caller_account(request, namespace, Role.READ)))
