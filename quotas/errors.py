"""Quota and catalog errors."""

from controlplane.errors import DomainError, InvalidSpec


class QuotaExceeded(DomainError):
    status_code = 403
    code = "quota_exceeded"
    message = "Quota exceeded"


class UnknownInstance(InvalidSpec):
    code = "unknown_instance"
    message = "Unknown instance"
