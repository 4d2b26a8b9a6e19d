"""One error type and one handler: every API error renders as ``{"error", "code", "fields"?}``.

``DomainError`` carries an HTTP status, a stable snake_case ``code``, a human message and optional
``fields`` (dotted field path -> messages). The handler also renders DRF's and Django's own errors in
the same shape, sets ``X-Error-Message`` on 403 (the ``huggingface_hub`` client reads it from there)
and turns an unreachable database into a 503 instead of a traceback.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from .errorcodes import Code

log = logging.getLogger(__name__)

# DRF's exception codes, as ours (any other DRF code would be a 4xx we never raise: bad_request).
DRF_CODES = {"parse_error": Code.PARSE_ERROR, "method_not_allowed": Code.METHOD_NOT_ALLOWED,
             "not_acceptable": Code.NOT_ACCEPTABLE, "unsupported_media_type": Code.UNSUPPORTED_MEDIA_TYPE,
             "permission_denied": Code.FORBIDDEN, "not_found": Code.NOT_FOUND}
UNAUTHENTICATED_MESSAGE = "A valid user or organization token, sent as a Bearer, is required"


class DomainError(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    code = Code.BAD_REQUEST
    message = "Bad request"

    def __init__(self, message: str | None = None, *, code: str | None = None, fields: dict | None = None, **extra):
        self.message = message or self.message
        self.code = code or self.code
        self.fields = fields or {}
        self.extra = extra
        super().__init__(detail=self.message, code=self.code)


class InvalidSpec(DomainError):
    code = Code.INVALID
    message = "Invalid request"


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = Code.NOT_FOUND
    message = "Not found"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = Code.CONFLICT
    message = "Conflict"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = Code.FORBIDDEN
    message = "You do not have permission to perform this action"


class ServiceUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = Code.SERVICE_UNAVAILABLE
    message = "The database is unavailable; retry shortly"


def flatten_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail -> ``{"compute.scaling.minReplica": ["..."]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            key = "body" if key == "non_field_errors" and not prefix else key
            path = f"{prefix}.{key}" if prefix and key != "non_field_errors" else (prefix or str(key))
            for sub, messages in flatten_errors(value, path).items():
                out.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if detail and all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail):
            out[prefix or "body"] = [str(item) for item in detail]
        else:
            for index, value in enumerate(detail):
                if value:
                    for sub, messages in flatten_errors(value, f"{prefix}[{index}]").items():
                        out.setdefault(sub, []).extend(messages)
    else:
        out[prefix or "body"] = [str(detail)]
    return out


def error_body(message: str, code: str, fields: dict | None = None, **extra) -> dict:
    body = {"error": message, "code": code}
    if fields:
        body["fields"] = fields
    body.update(extra)
    return body


def _render(exc) -> tuple[int, dict, dict]:
    """Map any exception the API can meet to (status, body, headers); unknown ones return status 0."""
    headers: dict[str, str] = {}
    if isinstance(exc, DomainError):
        return exc.status_code, error_body(exc.message, exc.code, exc.fields, **exc.extra), headers
    if isinstance(exc, (OperationalError, InterfaceError)):
        log.warning("api.database_unavailable error=%s", type(exc).__name__)
        return 503, error_body(ServiceUnavailable.message, ServiceUnavailable.code), {"Retry-After": "5"}
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return 413, error_body(f"Request body too large; the limit is {limit} bytes", Code.BODY_TOO_LARGE), headers
    if isinstance(exc, SuspiciousOperation):
        return 400, error_body("Malformed request", Code.BAD_REQUEST), headers
    if isinstance(exc, Http404):
        return 404, error_body("Not found", Code.NOT_FOUND), headers
    if isinstance(exc, PermissionDenied):
        return 403, error_body(Forbidden.message, Forbidden.code), headers
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        summary = "; ".join(f"{path}: {' '.join(messages)}" for path, messages in fields.items())
        return 400, error_body(f"Invalid request: {summary}", Code.INVALID, fields), headers
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        message = UNAUTHENTICATED_MESSAGE if isinstance(exc, exceptions.NotAuthenticated) else str(exc.detail)
        return 401, error_body(message, Code.UNAUTHENTICATED), {"WWW-Authenticate": 'Bearer realm="api"'}
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        return 429, error_body(f"Rate limit exceeded; retry in {wait} s", Code.RATE_LIMITED), {"Retry-After": str(wait)}
    if isinstance(exc, exceptions.APIException):  # DRF's own: parse_error, method_not_allowed, ...
        codes = exc.get_codes()
        code = DRF_CODES.get(codes, Code.BAD_REQUEST) if isinstance(codes, str) else Code.BAD_REQUEST
        return exc.status_code, error_body(str(exc.detail), code), headers
    return 0, {}, headers


def exception_handler(exc, context) -> Response | None:
    """DRF exception handler: every error in the one shape; unknown exceptions propagate (500)."""
    status_code, body, headers = _render(exc)
    if not status_code:
        return None
    if status_code == 403:
        headers["X-Error-Message"] = body["error"]
    if isinstance(exc, DatabaseError):
        # The failed statement may have left the connection unusable; drop it so the next request reconnects.
        from django.db import connection

        connection.close_if_unusable_or_obsolete()
    request = context.get("request")
    if request is not None:  # JSON whatever the view negotiated (the schema view's YAML, the browsable API)
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
    return Response(body, status=status_code, headers=headers)


def json_error_response(exc) -> JsonResponse | None:
    """The same rendering for code paths outside DRF (middleware, Django's handler404/500)."""
    status_code, body, headers = _render(exc)
    if not status_code:
        return None
    response = JsonResponse(body, status=status_code)
    for key, value in headers.items():
        response[key] = value
    return response
