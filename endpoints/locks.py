"""The per-endpoint Postgres advisory lock shared by the reconciler and the delete service."""

# High bits keep these keys apart from any other advisory lock the database may see.
_NAMESPACE = 0x454E << 40


def endpoint_lock_key(endpoint_id: int) -> int:
    """The bigint advisory-lock key of one endpoint."""
    return _NAMESPACE + endpoint_id
