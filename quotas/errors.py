"""Quota and catalog errors."""

from controlplane.errorcodes import Code
from controlplane.errors import DomainError, InvalidSpec


class QuotaExceeded(DomainError):
    status_code = 403
    code = Code.QUOTA_EXCEEDED
    message = "Quota exceeded"


class UnknownInstance(InvalidSpec):
    code = Code.UNKNOWN_INSTANCE
    message = "Unknown instance"
