"""Who may call an endpoint, decided from the cache.

- ``public``: anyone; the request goes upstream as sent (its Authorization header included).
- ``protected`` / ``authenticated``: a bearer token that exists, is not revoked or expired, and whose user
  holds a role on the endpoint's account (its personal owner, or any member of the organisation).
  No token -> 401, an invalid one -> 401, a valid one without access -> 403. The token is never
  forwarded upstream.
- ``private``: never served here (the caller answers 404 before asking).
"""

import hashlib
import time

from aiohttp import web

from controlplane.errorcodes import Code

from .errors import error

OPEN = "public"


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


async def authorize(route: dict, authorization: str | None, cache, client: str | None = None) -> web.Response | None:
    """None when the caller may pass, else the error response. Raises cache.Unverifiable, and
    cache.TooManyMisses when ``client`` has spent its budget of unknown lookups."""
    if route["type"] == OPEN:
        return None
    secret = bearer(authorization)
    if secret is None:
        return error(401, Code.UNAUTHENTICATED, "This endpoint needs a token: send 'Authorization: Bearer <token>'",
                     headers={"WWW-Authenticate": 'Bearer realm="endpoints"'})
    token = await cache.get("token", hashlib.sha256(secret.encode()).hexdigest(), client)
    if token is None or token["revoked"] or (token["expires"] is not None and token["expires"] <= time.time()):
        return error(401, Code.INVALID_TOKEN, "The token is invalid, expired or revoked",
                     headers={"WWW-Authenticate": 'Bearer realm="endpoints", error="invalid_token"'})
    if route["owner"] is not None:
        allowed = route["owner"] == token["user"]
    else:
        grant = await cache.get("grant", f"{route['accountId']}:{token['user']}", client)
        allowed = bool(grant and grant["role"])
    if not allowed:
        return error(403, Code.FORBIDDEN, f"Your token does not give access to '{route['account']}/{route['name']}'")
    return None
