"""The API docs: the OpenAPI schema and the Swagger UI page.

drf-spectacular's Swagger UI page loads its scripts from a CDN (drf-spectacular-sidecar, which would serve
them from here, is not installed). On the admin's origin such a script could read admin pages with the
operator's session, so the page is served sandboxed (``Content-Security-Policy: sandbox allow-scripts``):
it runs in an opaque origin of its own, with no access to this origin's cookies or pages. It can still read
the schema, which is public and served to any origin (CORS ``*``, never with credentials). Its "Try it out"
requests come from that opaque origin, so the API does not answer them: call the API with a client instead.
"""

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

DOCS_CONTENT_SECURITY_POLICY = "sandbox allow-scripts allow-popups; frame-ancestors 'none'"


class SchemaView(SpectacularAPIView):
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Access-Control-Allow-Origin"] = "*"
        return response


class SwaggerView(SpectacularSwaggerView):
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response
