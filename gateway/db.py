"""The gateway's database reads: three statements, used only on a cold miss (never on a warm request).

psycopg's async driver directly (no ORM, no Django setup), autocommit, a few pooled connections. Every
statement increments ``gateway_db_queries_total``, which the tests read to prove warm requests run none.
"""

import asyncio
import logging

import psycopg

from controlplane import records
from controlplane.names import host_id, host_name_candidate

from .metrics import DB_QUERIES

log = logging.getLogger(__name__)

ROUTE_SQL = """
SELECT e.id, e.name, e.type, e.state, e.intent, e.message, e.image,
       a.id AS account_id, a.slug AS account_slug, a.kind AS account_kind, a.user_id AS account_user_id,
       c.namespace_prefix, c.service_url_template, c.ingress_domain, c.simulated,
       r.generation AS canary_generation, r.weight AS canary_weight, r.sticky AS canary_sticky
FROM endpoints_endpoint e
JOIN controlplane_account a ON a.id = e.account_id
JOIN quotas_instancetype i ON i.id = e.instance_id
LEFT JOIN deployments_cluster c ON c.vendor = i.vendor AND c.region = i.region AND c.enabled
LEFT JOIN endpoints_rollout r ON r.endpoint_id = e.id AND r.generation = e.spec_generation AND r.weight > 0
     AND r.phase IN ('starting', 'progressing', 'promoting')
WHERE e.name = %s
"""
TOKEN_SQL = """
SELECT t.user_id, t.expires_at, t.revoked_at, u.is_active
FROM controlplane_apitoken t JOIN auth_user u ON u.id = t.user_id
WHERE t.digest = %s
"""
GRANT_SQL = "SELECT role FROM controlplane_membership WHERE account_id = %s AND user_id = %s"


class Database:
    """Loads one record by kind and key; raises ``psycopg.Error`` (or OSError) when the database fails."""

    def __init__(self, conninfo: dict, size: int = 4):
        self.conninfo, self.size = conninfo, size
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(size)

    async def _fetch(self, sql: str, params: tuple) -> list[tuple]:
        async with self._slots:
            # A pooled connection may have died while idle (server restart, idle timeout): one retry on a
            # fresh connection tells that apart from a database that is really down.
            for attempt in (1, 2):
                conn = self._idle.pop() if self._idle else None
                reused = conn is not None
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(autocommit=True, **self.conninfo)
                    DB_QUERIES.inc()
                    async with conn.cursor() as cursor:
                        await cursor.execute(sql, params)
                        rows = await cursor.fetchall()
                except psycopg.OperationalError:
                    if conn is not None:
                        await conn.close()
                    if reused and attempt == 1:
                        await self.close()  # the others idled as long: start afresh
                        continue
                    raise
                except BaseException:
                    if conn is not None:
                        await conn.close()
                    raise
                self._idle.append(conn)
                return rows
            raise AssertionError("unreachable")

    async def load(self, kind: str, key: str) -> dict | None:
        """The record of ``kind``/``key`` as ``controlplane.records`` builds it, or None when absent."""
        if kind == "route":
            name = host_name_candidate(key)
            if name is None:
                return None
            columns = ("id", "name", "type", "state", "intent", "message", "image", "account_id", "account_slug",
                       "account_kind", "account_user_id", "namespace_prefix", "service_url_template", "ingress_domain",
                       "simulated", "canary_generation", "canary_weight", "canary_sticky")
            for row in await self._fetch(ROUTE_SQL, (name,)):
                values = dict(zip(columns, row, strict=True))
                generation, weight, sticky = (values.pop(f"canary_{k}") for k in ("generation", "weight", "sticky"))
                values["canary"] = {"generation": generation, "weight": weight, "sticky": sticky} if weight else None
                if host_id(values["account_slug"], values["name"]) == key:
                    return records.route_record(values)
            return None
        if kind == "token":
            rows = await self._fetch(TOKEN_SQL, (key,))
            if not rows:
                return None
            user_id, expires_at, revoked_at, active = rows[0]
            return records.token_record(user_id=user_id, expires_at=expires_at.timestamp() if expires_at else None,
                                        revoked=revoked_at is not None or not active)
        if kind == "grant":
            account_id, _, user_id = key.partition(":")
            rows = await self._fetch(GRANT_SQL, (int(account_id), int(user_id)))
            return records.grant_record(rows[0][0] if rows else None)
        raise ValueError(f"unknown record kind {kind!r}")

    async def close(self) -> None:
        for conn in self._idle:
            await conn.close()
        self._idle.clear()
