"""The API docs: the OpenAPI schema, Swagger UI at /api/docs/ and Redoc at /api/redoc/.

Both pages run on this origin under the site-wide Content-Security-Policy (controlplane.middleware, with
``script-src 'self'``) and reference nothing on another origin: their scripts and styles are the pinned
drf-spectacular-sidecar files, served as our static files (SPECTACULAR_SETTINGS ``*_DIST = "SIDECAR"``).

Swagger UI's start-up script is served as a script of its own (``/api/docs/?script=``) rather than inline,
which the policy would block. Its "Try it out" calls the API from this origin: with a bearer token entered
under "Authorize", or with the operator's admin session (the script sends the CSRF token on unsafe
methods). Redoc is given its options as attributes (no inline script) and runs without its search box,
which needs a worker built from a ``blob:`` URL that the policy refuses.
"""

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema (public, as drf-spectacular serves it)."""


class SwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI, with its start-up script as a separate same-origin response."""


class RedocView(SpectacularRedocView):
    """Redoc, from a template without inline script or web fonts."""

    template_name = "controlplane/redoc.html"
