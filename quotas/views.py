"""The provider (hardware) listing the ``hf endpoints hardware`` command reads, and the quota API."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.models import Role
from controlplane.views import body_error_responses, error_responses
from controlplane.wire import iso_z
from endpoints.views import caller_account

from . import selectors, services
from .serializers import (
    HardwareSerializer,
    QuotaRequestCreateSerializer,
    QuotaRequestListSerializer,
    QuotaRequestSerializer,
    QuotaSerializer,
)


def _status(statuses: set[str]) -> str:
    return "available" if statuses & {"available", "low_availability"} else "not_available"


class ProviderView(APIView):
    """Every vendor, region and compute in the catalog, each with this account's quota in its own units
    (vCPUs for CPU computes, devices otherwise), so the client can hide what does not fit."""

    @extend_schema(operation_id="provider_list", tags=["hardware"],
                   responses={200: HardwareSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        limits, usage = selectors.quota_limits(account=account), selectors.quota_usage(account=account)
        vendors: dict[str, dict[str, dict]] = {}
        for it in selectors.catalog_list():
            region = vendors.setdefault(it.vendor, {}).setdefault(
                it.region, {"name": it.region, "label": it.region_label or it.region, "computes": []})
            region["computes"].append({
                "id": it.compute_id, "accelerator": it.accelerator, "numAccelerators": it.quota_units,
                "numCpus": it.vcpus, "memoryGb": float(it.memory_gb), "gpuMemoryGb": it.accelerator_memory_gb,
                "instanceType": it.instance_type, "instanceSize": it.instance_size,
                "architecture": it.architecture, "status": it.status, "pricePerHour": float(it.price_per_hour),
                "quota": {"maxAccelerators": limits[it.accelerator], "usedAccelerators": usage[it.accelerator]},
            })
        body = {"vendors": [
            {"name": vendor, "status": _status({c["status"] for r in regions.values() for c in r["computes"]}),
             "regions": [{**r, "status": _status({c["status"] for c in r["computes"]})} for r in regions.values()]}
            for vendor, regions in vendors.items()
        ]}
        return Response(body)


class QuotaView(APIView):
    @extend_schema(operation_id="quota_get", tags=["quotas"], responses={200: QuotaSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        limits, usage = selectors.quota_limits(account=account), selectors.quota_usage(account=account)
        return Response({
            "namespace": account.slug,
            "quotas": [{"accelerator": acc, "unit": selectors.UNIT[acc], "limit": limits[acc], "used": usage[acc],
                        "available": max(limits[acc] - usage[acc], 0)} for acc in limits],
            "endpoints": selectors.quota_breakdown(account=account),
        })


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
