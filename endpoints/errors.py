"""Endpoint errors, rendered by the one handler in ``controlplane.errors``."""

from controlplane.errorcodes import Code
from controlplane.errors import DomainError, NotFound


class EndpointNotFound(NotFound):
    code = Code.ENDPOINT_NOT_FOUND
    message = "Endpoint not found"


class RevisionNotFound(NotFound):
    code = Code.REVISION_NOT_FOUND
    message = "The endpoint has no spec revision of that number"


class StateConflict(DomainError):
    """The endpoint's state does not allow the operation (409 by default; 400 where HF answers 400)."""

    status_code = 409
    code = Code.STATE_CONFLICT
    message = "The endpoint's state does not allow this operation"

    def __init__(self, message: str | None = None, *, status: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        if status is not None:
            self.status_code = status


class TooManyStreams(DomainError):
    status_code = 429
    code = Code.TOO_MANY_STREAMS
    message = "Too many event streams open for this token"
