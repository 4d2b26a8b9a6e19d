"""Wire formats shared by every API: timestamps as the HF client parses them (``...Z``), and the serializer
field that writes them."""

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


def iso_z(value: datetime | None) -> str | None:
    """``2024-01-01T00:00:00.123Z``: UTC, millisecond precision, ``Z`` suffix; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@extend_schema_field({"type": "string", "format": "date-time", "nullable": True,
                      "example": "2024-01-01T00:00:00.123Z"})
class TimestampField(serializers.Field):
    """A response timestamp in the wire format (``iso_z``); read-only."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: datetime | None) -> str | None:
        return iso_z(value)
