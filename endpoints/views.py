"""The HF-compatible Endpoints v2 API: authenticate, authorise, parse, call one service, answer with the
serializer that documents the body."""

import redis
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from controlplane.errorcodes import Code
from controlplane.errors import InvalidSpec, ServiceUnavailable
from controlplane.models import ApiToken, Role
from controlplane.serializers import EmptySerializer
from controlplane.views import body_error_responses, caller_account, error_responses

from . import rollouts, selectors, services, stream
from .openmetrics import CONTENT_TYPE as OPENMETRICS_CONTENT_TYPE
from .openmetrics import exposition
from .rollout_serializers import RolloutActionSerializer, RolloutSerializer
from .serializers import (
    EndpointEventFrameSerializer,
    EndpointEventListSerializer,
    EndpointListQuerySerializer,
    EndpointListSerializer,
    EndpointRevisionListSerializer,
    EndpointSerializer,
    EndpointSpecSerializer,
    EndpointUpdateSerializer,
    RollbackSerializer,
)
from .traffic import traffic_totals


class EndpointCollectionView(APIView):
    @extend_schema(operation_id="endpoint_list", tags=["endpoints"],
                   parameters=[OpenApiParameter("tags", str, description="Only endpoints carrying this tag")],
                   responses={200: EndpointListSerializer, **error_responses(400, 403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        query = EndpointListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        tag = query.validated_data["tags"] or None
        return Response(EndpointListSerializer({"items": selectors.endpoint_list(account=account, tag=tag)}).data)

    @extend_schema(operation_id="endpoint_create", tags=["endpoints"], request=EndpointSpecSerializer,
                   responses={202: EndpointSerializer, **body_error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        endpoint = services.endpoint_create(account=account, spec=request.data, actor=request.user)
        return Response(EndpointSerializer(endpoint).data, status=202)


class EndpointDetailView(APIView):
    @extend_schema(operation_id="endpoint_get", tags=["endpoints"],
                   responses={200: EndpointSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str, name: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        return Response(EndpointSerializer(selectors.endpoint_get(account=account, name=name)).data)

    @extend_schema(operation_id="endpoint_update", tags=["endpoints"], request=EndpointUpdateSerializer,
                   description="Deep-merge partial update: objects merge key by key; model.image, model.env, "
                               "model.secrets, model.command, model.args and tags are replaced whole.",
                   responses={200: EndpointSerializer, **body_error_responses(403, 404, 409)})
    def put(self, request: Request, namespace: str, name: str) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        patch = EndpointUpdateSerializer(data=request.data)
        patch.is_valid(raise_exception=True)
        rollout = None
        if "rollout" in patch.validated_data:
            body = RolloutSerializer(data=patch.validated_data["rollout"])
            if not body.is_valid():
                raise serializers.ValidationError({"rollout": body.errors})
            rollout = body.validated_data
        endpoint = services.endpoint_update(account=account, name=name, patch=patch.validated_data,
                                            actor=request.user, rollout=rollout)
        return Response(EndpointSerializer(selectors.endpoint_get(account=account, name=endpoint.name)).data)

    @extend_schema(operation_id="endpoint_delete", tags=["endpoints"],
                   responses={200: EmptySerializer, **error_responses(403, 404)})
    def delete(self, request: Request, namespace: str, name: str) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        services.endpoint_delete(account=account, name=name, actor=request.user)
        return Response({})


ACTION_RESPONSES = {200: EndpointSerializer, **error_responses(400, 403, 404, 409)}


class _ActionView(APIView):
    """POST with no body required (the HF client sends none): one lifecycle service, then the endpoint."""

    def act(self, request: Request, namespace: str, name: str, service) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        service(account=account, name=name, actor=request.user)
        return Response(EndpointSerializer(selectors.endpoint_get(account=account, name=name)).data)


class EndpointPauseView(_ActionView):
    @extend_schema(operation_id="endpoint_pause", tags=["endpoints"], request=None, responses=ACTION_RESPONSES,
                   description="Pause: no replicas, url cleared, quota freed.")
    def post(self, request: Request, namespace: str, name: str) -> Response:
        return self.act(request, namespace, name, services.endpoint_pause)


class EndpointResumeView(_ActionView):
    @extend_schema(operation_id="endpoint_resume", tags=["endpoints"], request=None, responses=ACTION_RESPONSES,
                   description="Resume a paused, scaled-to-zero or failed endpoint; 400 'already running' otherwise.")
    def post(self, request: Request, namespace: str, name: str) -> Response:
        return self.act(request, namespace, name, services.endpoint_resume)


class EndpointScaleToZeroView(_ActionView):
    @extend_schema(operation_id="endpoint_scale_to_zero", tags=["endpoints"], request=None,
                   responses=ACTION_RESPONSES, description="Scale to zero now; the url is kept.")
    def post(self, request: Request, namespace: str, name: str) -> Response:
        return self.act(request, namespace, name, services.endpoint_scale_to_zero)


class EventStreamRenderer(BaseRenderer):
    """Lets an EventSource's ``Accept: text/event-stream`` through content negotiation (the view streams the
    body itself); errors stay JSON (``controlplane.errors``)."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class EndpointEventsQuerySerializer(serializers.Serializer):
    follow = serializers.BooleanField(default=False, help_text="Stream the events as Server-Sent Events")


class EndpointEventsView(APIView):
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, EventStreamRenderer]

    @extend_schema(
        operation_id="endpoint_events", tags=["endpoints"],
        description="The endpoint's events (the latest 200, oldest first). With `follow=true` (or "
                    "`Accept: text/event-stream`) a Server-Sent Events stream instead: those events, then each new "
                    "one as it happens, each with `id:` so that `Last-Event-ID` resumes after it; comment lines "
                    "as heartbeats; `event: end` when the endpoint is gone or the stream's time is up "
                    "(reconnect with Last-Event-ID). At most EVENT_STREAM_MAX_PER_TOKEN streams per token (429).",
        parameters=[EndpointEventsQuerySerializer,
                    OpenApiParameter("Last-Event-ID", int, location=OpenApiParameter.HEADER, required=False,
                                     description="With follow: resume after this event id")],
        responses={(200, "application/json"): EndpointEventListSerializer,
                   (200, "text/event-stream"): OpenApiResponse(EndpointEventFrameSerializer,
                                                               description="Server-Sent Events (schema: one event)"),
                   **{(code, "application/json"): response
                      for code, response in error_responses(403, 404, 429).items()}})
    def get(self, request: Request, namespace: str, name: str) -> HttpResponseBase:
        account = caller_account(request, namespace, Role.READ)
        query = EndpointEventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data["follow"] or isinstance(request.accepted_renderer, EventStreamRenderer):
            return self._stream(request, account, name)
        events = selectors.endpoint_events(account=account, name=name)
        return Response(EndpointEventListSerializer({"items": events}).data)

    def _stream(self, request: Request, account, name: str) -> StreamingHttpResponse:
        raw = request.headers.get("Last-Event-ID", "").strip()
        if raw and not (raw.isdigit() and len(raw) <= 18):
            raise InvalidSpec("Last-Event-ID must be an event id", fields={"Last-Event-ID": ["an event id"]})
        after = int(raw) if raw else None
        endpoint = selectors.endpoint_get(account=account, name=name)
        token = request.auth if isinstance(request.auth, ApiToken) else None
        release = stream.slot_acquire(f"token:{token.pk}" if token else f"user:{request.user.pk}")
        try:
            first = stream.backlog(endpoint, after)
        except BaseException:
            release()
            raise
        response = StreamingHttpResponse(stream.EventStream(endpoint.pk, first, after, release),
                                         content_type="text/event-stream; charset=utf-8")
        # No caching, and no buffering by a proxy in front (nginx honours X-Accel-Buffering).
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


class EndpointRevisionsView(APIView):
    @extend_schema(operation_id="endpoint_revisions", tags=["endpoints"],
                   description="The endpoint's spec revisions, newest first: every spec generation that reached "
                               "a cluster, with its outcome. Secrets by key and version only.",
                   responses={200: EndpointRevisionListSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str, name: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        revisions = selectors.endpoint_revisions(account=account, name=name)
        return Response(EndpointRevisionListSerializer({"items": revisions}).data)


class EndpointRollbackView(APIView):
    @extend_schema(operation_id="endpoint_rollback", tags=["endpoints"], request=RollbackSerializer,
                   description="Return to a spec revision that served, spec and model commit, as a new generation: "
                               "no body for the one that served before the current one, or {\"revision\": N}. "
                               "409 when the endpoint is being deleted, N never served, or its secret values are "
                               "no longer stored; 403 when the quota does not admit it.",
                   responses={200: EndpointSerializer, **body_error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str, name: str) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        body = RollbackSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        services.endpoint_rollback(account=account, name=name, revision=body.validated_data.get("revision"),
                                   actor=request.user)
        return Response(EndpointSerializer(selectors.endpoint_get(account=account, name=name)).data)


class _RolloutActionView(APIView):
    def act(self, request: Request, namespace: str, name: str, service) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        body = RolloutActionSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        service(account=account, name=name, actor=request.user, reason=body.validated_data.get("reason") or "")
        return Response(EndpointSerializer(selectors.endpoint_get(account=account, name=name)).data)


class EndpointRolloutPromoteView(_RolloutActionView):
    @extend_schema(operation_id="endpoint_rollout_promote", tags=["endpoints"], request=RolloutActionSerializer,
                   description="Skip the canary's remaining steps and gates: the stable version rolls to the new "
                               "spec now. 409 no_rollout when no canary is under way.",
                   responses={200: EndpointSerializer, **body_error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str, name: str) -> Response:
        return self.act(request, namespace, name, rollouts.rollout_promote)


class EndpointRolloutAbortView(_RolloutActionView):
    @extend_schema(operation_id="endpoint_rollout_abort", tags=["endpoints"], request=RolloutActionSerializer,
                   description="Roll the canary back now: its traffic returns to the stable version and its "
                               "objects go; the endpoint reports updateFailed. 409 no_rollout when none is under way.",
                   responses={200: EndpointSerializer, **body_error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str, name: str) -> Response:
        return self.act(request, namespace, name, rollouts.rollout_abort)


class OpenMetricsRenderer(BaseRenderer):
    """Lets a scraper's ``Accept: application/openmetrics-text`` through content negotiation; the view answers
    with the exposition itself, and errors are JSON whatever was negotiated (``controlplane.errors``)."""

    media_type = "application/openmetrics-text"
    format = "openmetrics"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class EndpointOpenMetricsView(APIView):
    renderer_classes = [OpenMetricsRenderer, *api_settings.DEFAULT_RENDERER_CLASSES]

    @extend_schema(
        operation_id="endpoint_open_metrics", tags=["endpoints"],
        description="The endpoint's metrics in the OpenMetrics text format: requests by status class (counter), "
                    "latency (histogram), pending requests and current/desired replicas (gauges). Counted by "
                    "the gateway for requests that passed the endpoint's access check.",
        responses={(200, "application/openmetrics-text"): OpenApiResponse(OpenApiTypes.STR,
                                                                         description="OpenMetrics 1.0 text"),
                   **{(code, "application/json"): response
                      for code, response in error_responses(403, 404).items()}})
    def get(self, request: Request, namespace: str, name: str) -> HttpResponse:
        account = caller_account(request, namespace, Role.READ)
        endpoint = selectors.endpoint_get(account=account, name=name)
        try:
            totals = traffic_totals(endpoint.pk)
        except redis.RedisError as exc:
            # Never zeros instead: a counter dropping to 0 reads as a reset, a gap reads as what it is.
            raise ServiceUnavailable("The traffic statistics cannot be read right now; retry shortly",
                                     code=Code.TRAFFIC_UNAVAILABLE) from exc
        return HttpResponse(exposition(endpoint, totals), content_type=OPENMETRICS_CONTENT_TYPE)
