"""The per-endpoint Postgres advisory lock shared by the reconciler and the delete service, and the cost
ledger's: their keys and the only SQL that takes them."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

# High bits keep these keys apart from any other advisory lock the database may see.
_NAMESPACE = 0x454E << 40


def endpoint_lock_key(endpoint_id: int) -> int:
    """The bigint advisory-lock key of one endpoint."""
    return _NAMESPACE + endpoint_id


LEDGER_KEY = _NAMESPACE  # endpoint ids start at 1, so key 0 of the namespace is free for the ledger


def ledger_lock_for_transaction(*, wait: bool) -> bool:
    """Take the cost ledger's lock until the current transaction ends; True if taken. ``wait=False``
    gives up at once when another accrual holds it."""
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_KEY])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LEDGER_KEY])
        return bool(cursor.fetchone()[0])


def endpoint_try_lock_for_transaction(endpoint_id: int) -> bool:
    """Take the endpoint's lock until the current transaction ends, unless someone holds it; True if taken."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [endpoint_lock_key(endpoint_id)])
        return bool(cursor.fetchone()[0])


@contextmanager
def endpoint_session_lock(endpoint_id: int) -> Iterator[bool]:
    """Hold the endpoint's lock for the block, outside any transaction (a reconcile pass spans several),
    unless someone holds it: yields whether it is held, and releases it after the block."""
    key = endpoint_lock_key(endpoint_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
