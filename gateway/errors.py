"""Error responses in the API's shape: ``{"error": <message>, "code": <snake_case>}``."""

import json

from aiohttp import web


def error(status: int, code: str, message: str, *, retry_after: int | None = None,
          headers: dict | None = None) -> web.Response:
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    if status == 403:
        extra["X-Error-Message"] = message  # as the API does
    return web.Response(status=status, text=json.dumps({"error": message, "code": code}),
                        content_type="application/json", headers=extra)
