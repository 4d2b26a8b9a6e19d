"""API errors and the v1 Status bodies that carry them.

Contract: any code under the HTTP layer raises ``ApiError``; the server turns it into a
response whose body is a ``{"kind": "Status", "apiVersion": "v1", "status": "Failure", ...}``
document, which is what makes the official client raise ``ApiException`` with ``.status``,
``.reason`` and a JSON ``.body`` a caller can inspect like a real server's.
"""

from __future__ import annotations

# HTTP code -> the StatusReason a real apiserver uses for it.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error answer. ``reason`` defaults from ``code`` (e.g. 409 -> Conflict)."""

    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict:
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(code: int, message: str, reason: str | None = None,
                details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason or REASONS.get(code, "Unknown"),
            "code": code}
    if details:
        body["details"] = details
    return body


def success_status(rt, obj: dict) -> dict:
    """The Status a real server returns for a DELETE of kinds that do not echo the object."""
    meta = obj.get("metadata", {})
    details = {"name": meta.get("name"), "kind": rt.plural, "uid": meta.get("uid")}
    if rt.group:
        details["group"] = rt.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


def not_found(rt, name: str) -> ApiError:
    return ApiError(404, f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" not found',
                    details={"name": name, "kind": rt.plural,
                             **({"group": rt.group} if rt.group else {})})


def already_exists(rt, name: str) -> ApiError:
    return ApiError(409, f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" already exists',
                    reason="AlreadyExists",
                    details={"name": name, "kind": rt.plural,
                             **({"group": rt.group} if rt.group else {})})


def conflict(rt, name: str) -> ApiError:
    # Same wording as the apiserver so log-scraping code behaves the same.
    return ApiError(409, f'Operation cannot be fulfilled on {rt.plural}'
                         f'{"." + rt.group if rt.group else ""} "{name}": the object has been '
                         f'modified; please apply your changes to the latest version and try again',
                    details={"name": name, "kind": rt.plural,
                             **({"group": rt.group} if rt.group else {})})


def invalid(rt, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid with one StatusCause per (field, message)."""
    text = "; ".join(f"{field}: {msg}" if field else msg for field, msg in causes)
    return ApiError(422, f'{rt.qualified_kind} "{name}" is invalid: {text}',
                    details={"name": name, "kind": rt.kind,
                             **({"group": rt.group} if rt.group else {}),
                             "causes": [{"reason": "FieldValueInvalid", "message": msg,
                                         "field": field} for field, msg in causes]})
