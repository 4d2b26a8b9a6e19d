"""``GET /v2/endpoint/{ns}/{name}/logs``: replicas' container logs as text/plain;
``GET /v2/endpoint/{ns}/{name}/replicas``: the replicas (pods) and their states, read live from the cluster."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.models import Role
from controlplane.views import caller_account, error_responses
from endpoints.selectors import endpoint_get

from .logs import endpoint_logs, endpoint_replicas


class LogsQuerySerializer(serializers.Serializer):
    tail = serializers.IntegerField(min_value=1, max_value=10_000, default=200)
    replica = serializers.CharField(max_length=253, required=False, default=None,
                                    help_text="A replica's name, as GET .../replicas lists it")


class EndpointLogsView(APIView):
    @extend_schema(operation_id="endpoint_logs", tags=["endpoints"],
                   parameters=[OpenApiParameter("tail", int, description="Lines per replica (1-10000, default 200)"),
                               OpenApiParameter("replica", str, description="One replica (pod) only: a `name` "
                                                                                 "from GET .../replicas")],
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


class ReplicaFailureSerializer(serializers.Serializer):
    container = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    exitCode = serializers.IntegerField(allow_null=True)
    finishedAt = serializers.CharField(allow_null=True)


class ReplicaSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The pod's name; the logs API takes it as `replica`")
    state = serializers.ChoiceField(["pending", "initializing", "running", "failed", "terminating", "succeeded",
                                     "unknown"])
    reason = serializers.CharField(allow_null=True, help_text="Why it is not running, when it is not")
    ready = serializers.BooleanField()
    node = serializers.CharField(allow_null=True)
    restarts = serializers.IntegerField()
    startedAt = serializers.CharField(allow_null=True)
    lastFailure = ReplicaFailureSerializer(allow_null=True)


class ReplicaListSerializer(serializers.Serializer):
    items = ReplicaSerializer(many=True)


class EndpointReplicasView(APIView):
    @extend_schema(operation_id="endpoint_replicas", tags=["endpoints"],
                   description="The endpoint's replicas (pods), read live from its cluster: state, node, restarts, "
                               "start time and the last failure of a container. Empty before anything was "
                               "applied to a cluster.",
                   responses={200: ReplicaListSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str, name: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        endpoint = endpoint_get(account=account, name=name)
        return Response(ReplicaListSerializer({"items": endpoint_replicas(endpoint=endpoint)}).data)
