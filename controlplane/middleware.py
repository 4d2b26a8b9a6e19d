"""Request-wide middleware: request ids, malformed requests, and a clean 503 when the database is down."""

import logging
import uuid

from django.core.exceptions import DisallowedHost, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404

from .errors import json_error_response

log = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Echo the caller's ``X-Request-Id`` (or the HF client's ``X-Amzn-Trace-Id``), or make one."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = (request.headers.get("X-Request-Id") or request.headers.get("X-Amzn-Trace-Id")
                      or uuid.uuid4().hex)[:128]
        request.request_id = request_id
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        return response


class MalformedRequestMiddleware:
    """Requests refused before anything reads them, in the error shape rather than Django's HTML pages.

    A Host header Django refuses (not a valid host name, or not in ALLOWED_HOSTS) is a 400: left to
    CommonMiddleware it becomes Django's HTML "Bad Request (400)" page, since it is raised outside any
    view. A path with a NUL character names nothing that can exist (Postgres cannot store one, so a
    lookup would fail with a DataError): 404.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            request.get_host()
        except DisallowedHost as exc:
            log.warning("api.disallowed_host path=%s", request.path[:200])
            return json_error_response(exc)
        if "\x00" in request.path:
            return json_error_response(Http404())
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Outside DRF views (sessions, admin): a database outage becomes a 503, a malformed request a 4xx,
    both in the error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            from django.db import connection

            connection.close_if_unusable_or_obsolete()
            return json_error_response(exception)
        if isinstance(exception, SuspiciousOperation):
            return json_error_response(exception)
        return None


# Every response, the API docs and static files included: scripts, styles and everything else from this
# origin only (the admin and the docs pages ship their own; no page here needs a third-party script). Inline
# styles are allowed (the admin and Swagger UI set some).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
                           "frame-ancestors 'none'")


class ContentSecurityPolicyMiddleware:
    """Sets ``CONTENT_SECURITY_POLICY`` on every response that has no policy of its own (none here sets
    one), so no third-party script ever runs on the admin's origin."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
