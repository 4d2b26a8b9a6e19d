"""``/v2/webhooks/{namespace}``: an account's webhook subscriptions, their delivery log and redelivery.

Reads need read access to the account; writes need write (or admin) access and a write token (a read token
caps the caller at read: 403). Another tenant's namespace is a 404, as everywhere.
"""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import Role
from ..serializers import EmptySerializer
from ..views import body_error_responses, caller_account, error_responses
from . import selectors, services
from .serializers import (
    WebhookCreatedSerializer,
    WebhookCreateSerializer,
    WebhookDeliveryListSerializer,
    WebhookDeliverySerializer,
    WebhookListSerializer,
    WebhookSerializer,
    WebhookUpdateSerializer,
)

TAGS = ["webhooks"]


def _created(subscription, secret: str) -> dict:
    return {**WebhookSerializer(subscription).data, "secret": secret}


class WebhookCollectionView(APIView):
    @extend_schema(operation_id="webhook_list", tags=TAGS,
                   responses={200: WebhookListSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.READ)
        return Response(WebhookListSerializer({"items": selectors.webhook_list(account=account)}).data)

    @extend_schema(operation_id="webhook_create", tags=TAGS, request=WebhookCreateSerializer,
                   description="Subscribe a URL to the account's events. The answer carries the signing secret, "
                               "shown this once.",
                   responses={201: WebhookCreatedSerializer, **body_error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        body = WebhookCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        subscription, secret = services.webhook_create(account=account, url=data["url"], events=data.get("events"),
                                                       description=data.get("description", ""), actor=request.user)
        return Response(_created(subscription, secret), status=201)


class WebhookDetailView(APIView):
    @extend_schema(operation_id="webhook_get", tags=TAGS, responses={200: WebhookSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str, webhook_id: int) -> Response:
        account = caller_account(request, namespace, Role.READ)
        return Response(WebhookSerializer(selectors.webhook_get(account=account, webhook_id=webhook_id)).data)

    @extend_schema(operation_id="webhook_update", tags=TAGS, request=WebhookUpdateSerializer,
                   responses={200: WebhookSerializer, **body_error_responses(403, 404)})
    def patch(self, request: Request, namespace: str, webhook_id: int) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        body = WebhookUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        subscription = services.webhook_update(account=account, webhook_id=webhook_id, changes=body.validated_data,
                                               actor=request.user)
        return Response(WebhookSerializer(subscription).data)

    @extend_schema(operation_id="webhook_delete", tags=TAGS, responses={200: EmptySerializer, **error_responses(403, 404)})
    def delete(self, request: Request, namespace: str, webhook_id: int) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        services.webhook_delete(account=account, webhook_id=webhook_id, actor=request.user)
        return Response({})


class WebhookRotateSecretView(APIView):
    @extend_schema(operation_id="webhook_rotate_secret", tags=TAGS, request=None,
                   description="A new signing secret, shown this once; the old one signs nothing more.",
                   responses={200: WebhookCreatedSerializer, **error_responses(403, 404)})
    def post(self, request: Request, namespace: str, webhook_id: int) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        subscription, secret = services.webhook_secret_rotate(account=account, webhook_id=webhook_id,
                                                              actor=request.user)
        return Response(_created(subscription, secret))


class WebhookDeliveriesView(APIView):
    @extend_schema(operation_id="webhook_deliveries", tags=TAGS,
                   description="The latest 100 deliveries, newest first, each with its attempts.",
                   responses={200: WebhookDeliveryListSerializer, **error_responses(403, 404)})
    def get(self, request: Request, namespace: str, webhook_id: int) -> Response:
        account = caller_account(request, namespace, Role.READ)
        subscription = selectors.webhook_get(account=account, webhook_id=webhook_id)
        return Response(WebhookDeliveryListSerializer({"items": selectors.delivery_list(subscription=subscription)}).data)


class WebhookRedeliverView(APIView):
    @extend_schema(operation_id="webhook_redeliver", tags=TAGS, request=None,
                   description="Send the delivery again now (same webhook-id and body), whatever its status.",
                   responses={202: WebhookDeliverySerializer, **error_responses(403, 404, 409)})
    def post(self, request: Request, namespace: str, webhook_id: int, delivery_id: int) -> Response:
        account = caller_account(request, namespace, Role.WRITE)
        delivery = services.webhook_redeliver(account=account, webhook_id=webhook_id, delivery_id=delivery_id,
                                              actor=request.user)
        return Response(WebhookDeliverySerializer(delivery).data, status=202)
