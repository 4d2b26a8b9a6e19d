"""Bearer-token authentication for the API (``Authorization: Bearer <token>``)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .selectors import token_get_by_secret
from .services import token_touch


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Sets ``request.user`` to the token's owner and ``request.auth`` to the ApiToken.

    No header -> anonymous (the permission check answers 401). A header with an unknown, revoked or
    expired token -> 401 at once, with a message that does not say which.
    """

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").strip()
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != self.keyword or not secret.strip():
            raise exceptions.AuthenticationFailed("Invalid Authorization header; use 'Bearer <token>'")
        token = token_get_by_secret(secret=secret.strip())
        if token is None or not token.is_active() or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token")
        token_touch(token=token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
