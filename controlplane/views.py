"""whoami, the caller's tokens, and the health/readiness/metrics probes."""

from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .errorcodes import Code
from .errors import Forbidden
from .models import Account, ApiToken, Role
from .selectors import account_get_for_caller, token_list, user_orgs
from .serializers import (
    ErrorSerializer,
    HubTokenSerializer,
    HubTokenStateSerializer,
    TokenCreatedSerializer,
    TokenCreateSerializer,
    TokenListSerializer,
    TokenSerializer,
    WhoamiSerializer,
)


def caller_account(request: Request, namespace: str, need: str) -> Account:
    """The account ``namespace`` if the caller (user and token) holds at least ``need`` in it; else a 404
    (not theirs) or 403 (too low a role), as ``account_get_for_caller`` raises."""
    return account_get_for_caller(user=request.user, token=request.auth if request.auth else None,
                                  namespace=namespace, need=need)


def error_responses(*codes: int) -> dict:
    """The error responses of an operation: its own ``codes`` plus those any request can meet (400 for a
    malformed request, e.g. a Host header that is not a host name)."""
    return {code: OpenApiResponse(ErrorSerializer, description="Error") for code in (400, 401, 429, 503, *codes)}


def body_error_responses(*codes: int) -> dict:
    """As ``error_responses``, for operations that read a JSON body (413 too large)."""
    return error_responses(413, *codes)


class WhoamiView(APIView):
    """``GET /api/whoami-v2`` in the Hugging Face Hub shape the ``huggingface_hub`` client reads."""

    @extend_schema(operation_id="whoami", tags=["account"], responses={200: WhoamiSerializer, **error_responses()})
    def get(self, request: Request) -> Response:
        user = request.user
        token: ApiToken | None = request.auth if isinstance(request.auth, ApiToken) else None
        body = {
            "type": "user",
            "id": str(user.pk),
            "name": user.get_username(),
            "fullname": user.get_full_name() or user.get_username(),
            "email": user.email or None,
            "isStaff": user.is_staff,
            "orgs": [{"type": "org", "name": account.slug, "roleInOrg": role}
                     for account, role in user_orgs(user=user)],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": token.name, "role": token.role}} if token else {"type": "session"},
        }
        return Response(WhoamiSerializer(body).data)


class WriteTokenForWrites(BasePermission):
    """Writes of tokens and account credentials need a session or a write token: a read token may list, never
    mint, revoke or set (a 403 naming why)."""

    def has_permission(self, request: Request, view) -> bool:
        if request.method not in SAFE_METHODS and isinstance(request.auth, ApiToken) \
                and request.auth.role != ApiToken.TokenRole.WRITE:
            raise Forbidden("A read token cannot manage tokens; use a write token")
        return True


class TokenListView(APIView):
    """The caller's own API tokens. The secret appears only in the response that creates it."""

    permission_classes = [IsAuthenticated, WriteTokenForWrites]

    @extend_schema(operation_id="token_list", tags=["tokens"], responses={200: TokenListSerializer, **error_responses()})
    def get(self, request: Request) -> Response:
        return Response(TokenListSerializer({"items": token_list(user=request.user)}).data)

    @extend_schema(operation_id="token_create", tags=["tokens"], request=TokenCreateSerializer,
                   responses={201: TokenCreatedSerializer, **body_error_responses(403, 409)})
    def post(self, request: Request) -> Response:
        data = TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = services.token_create(user=request.user, name=data.validated_data["name"],
                                              role=data.validated_data["role"],
                                              expires_at=data.validated_data["expiresAt"],
                                              parent=request.auth if isinstance(request.auth, ApiToken) else None)
        return Response({**TokenSerializer(token).data, "token": secret}, status=201)


class TokenDetailView(APIView):
    permission_classes = [IsAuthenticated, WriteTokenForWrites]

    @extend_schema(operation_id="token_revoke", tags=["tokens"],
                   responses={200: TokenSerializer, **error_responses(403, 404)})
    def delete(self, request: Request, token_id: int) -> Response:
        return Response(TokenSerializer(services.token_revoke(user=request.user, token_id=token_id)).data)


class HubTokenView(APIView):
    """The account's own Hub token, for its endpoints' private and gated repositories: set or cleared by an
    account admin, never read back (GET says only whether one is set)."""

    permission_classes = [IsAuthenticated, WriteTokenForWrites]

    def _account(self, request: Request, namespace: str, need: str):
        return caller_account(request, namespace, need)

    @extend_schema(operation_id="hub_token_get", tags=["accounts"], responses={200: HubTokenStateSerializer,
                                                                                **error_responses(403, 404)})
    def get(self, request: Request, namespace: str) -> Response:
        return Response({"set": bool(self._account(request, namespace, Role.READ).hub_token_encrypted)})

    @extend_schema(operation_id="hub_token_set", tags=["accounts"], request=HubTokenSerializer,
                   responses={200: HubTokenStateSerializer, **body_error_responses(403, 404)})
    def put(self, request: Request, namespace: str) -> Response:
        data = HubTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = self._account(request, namespace, Role.ADMIN)
        services.account_hub_token_set(account=account, token=data.validated_data["token"], actor=request.user)
        return Response({"set": True})

    @extend_schema(operation_id="hub_token_clear", tags=["accounts"],
                   responses={200: HubTokenStateSerializer, **error_responses(403, 404)})
    def delete(self, request: Request, namespace: str) -> Response:
        account = self._account(request, namespace, Role.ADMIN)
        services.account_hub_token_set(account=account, token=None, actor=request.user)
        return Response({"set": False})


def healthz(_request) -> HttpResponse:
    """The process is alive. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def readyz(_request) -> HttpResponse:
    """Ready to serve: the database answers and the broker answers. 503 naming what is down otherwise."""
    from .readiness import check_broker, check_database

    checks = {"database": check_database(), "broker": check_broker()}
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def metrics(_request) -> HttpResponse:
    """Prometheus text exposition of the control plane's gauges and counters."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from .metrics import REGISTRY

    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)



def not_found(request, exception=None) -> HttpResponse:
    """Unknown paths answer in the API error shape."""
    return JsonResponse({"error": f"No route for {request.path}", "code": Code.NOT_FOUND}, status=404)


def server_error(request) -> HttpResponse:
    """Last resort: a 500 in the API error shape, never a traceback page."""
    return JsonResponse({"error": "Internal server error", "code": Code.INTERNAL_ERROR}, status=500)
