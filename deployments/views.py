"""``GET /v2/endpoint/{ns}/{name}/logs``: replicas' container logs as text/plain."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from controlplane.models import Role
from controlplane.views import caller_account, error_responses
from endpoints.selectors import endpoint_get

from .logs import endpoint_logs


class LogsQuerySerializer(serializers.Serializer):
    tail = serializers.IntegerField(min_value=1, max_value=10_000, default=200)
    replica = serializers.CharField(max_length=253, required=False, default=None)


class EndpointLogsView(APIView):
    @extend_schema(operation_id="endpoint_logs", tags=["endpoints"],
                   parameters=[OpenApiParameter("tail", int, description="Lines per replica (1-10000, default 200)"),
                               OpenApiParameter("replica", str, description="One replica (pod) only")],
                   responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Logs, per replica"),
                              **error_responses(400, 403, 404)})
    def get(self, request: Request, namespace: str, name: str) -> HttpResponse:
        account = caller_account(request, namespace, Role.READ)
        query = LogsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        endpoint = endpoint_get(account=account, name=name)
        text = endpoint_logs(endpoint=endpoint, tail=query.validated_data["tail"],
                             replica=query.validated_data["replica"])
        return HttpResponse(text, content_type="text/plain; charset=utf-8")
