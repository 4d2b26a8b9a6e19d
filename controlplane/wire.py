"""Wire formats shared by every API: timestamps as the HF client parses them (``...Z``)."""

from datetime import UTC, datetime


def iso_z(value: datetime | None) -> str | None:
    """``2024-01-01T00:00:00.123Z``: UTC, millisecond precision, ``Z`` suffix; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
