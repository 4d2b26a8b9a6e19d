"""The gateway's memory of routes, tokens and grants, kept current by the Redis feed.

Contract of ``Cache.get(kind, key)`` (kinds and records: ``controlplane.records``):

- **Warm** (the entry was read or pushed while the feed subscription has been up): answered from memory,
  no I/O at all. Once older than ``cache_max_age`` it is re-read from Redis in the background (a safety
  net for a publication that never reached Redis), while the old value keeps serving.
- **Miss**: Redis ``GET``; if Redis has no record, one database read (``gateway.db``), whose result is
  stored in Redis for the other gateway replicas. Concurrent misses of one key share one read.
- **Redis unreachable**: entries confirmed less than ``stale_seconds`` ago (confirmed = read, or covered
  by a live feed until it dropped) keep serving; anything else raises ``Unverifiable`` (the caller
  answers 503). The database is not consulted then: without the feed, nothing read from it could be
  kept current.
- After the feed reconnects, every remembered entry is re-read on its next use, from the database this
  time: messages may have been missed while the feed was down, and a publication lost during the outage
  left Redis stale too. The fresh record is written back to Redis and broadcast, which heals both.

Feed messages update entries already in memory (a newer version wins) and are passed to ``on_route``.

Trust: every stored value and feed message must carry the record key's signature
(``controlplane.records``); one that does not is counted in ``gateway_records_rejected_total`` and treated
as absent (a stored one is then read from the database, whose answer replaces it in Redis). A stored
record older than the record TTL cannot be a current one (every write sets that TTL) and is treated the
same way, which bounds the replay of a captured genuine record.

Absent answers (no such token, no endpoint behind a host) are remembered apart from the records, for
``negative_ttl`` seconds and at most ``negative_size`` per kind, so random keys cannot push real records
out of memory; a feed message for the key clears its absent answer at once. An absent answer read from
the database is not written to Redis (a flood of random keys would fill it), except when re-read after
an outage, where it may correct a stale record. With ``client`` given, a lookup that misses memory
spends one unit of that client's ``MissBudget``; an empty budget raises ``TooManyMisses`` (429).
"""

import asyncio
import logging
import time
from collections import OrderedDict

import psycopg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from controlplane import records

from .metrics import FEED_CONNECTED, LOOKUPS, RECORDS_REJECTED

log = logging.getLogger(__name__)
PING_SECONDS = 2.0
SILENT_SECONDS = 6.0
MAX_SKEW_SECONDS = 60  # allowed between the clocks of the writer that versioned a record and this host


class Unverifiable(Exception):
    """Nothing fresh enough is known and neither Redis nor the database can be read now."""


class TooManyMisses(Exception):
    """The client spent its budget of lookups that miss memory."""


class Entry:
    __slots__ = ("value", "version", "checked")

    def __init__(self, value: dict | None, version: int, checked: float):
        self.value, self.version, self.checked = value, version, checked


class Cache:
    def __init__(self, *, redis: aioredis.Redis, db, prefix: str, signing_key: bytes, max_age: float,
                 stale_seconds: float, size: int, record_ttl: int, negative_ttl: float = 10.0,
                 negative_size: int = 20_000, misses=None, on_route=None):
        """``misses``: a ``gateway.clients.MissBudget`` (None: no per-client budget)."""
        self.redis, self.db, self.prefix, self.signing_key = redis, db, prefix, signing_key
        self.max_age, self.stale_seconds, self.size, self.record_ttl = max_age, stale_seconds, size, record_ttl
        self.negative_ttl, self.negative_size, self.misses = negative_ttl, negative_size, misses
        self.on_route = on_route
        self._memory: dict[str, OrderedDict[str, Entry]] = {kind: OrderedDict() for kind in records.KINDS}
        # kind -> key -> monotonic time until which the key is known absent
        self._absent: dict[str, OrderedDict[str, float]] = {kind: OrderedDict() for kind in records.KINDS}
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}
        self._pushed: dict[tuple[str, str], tuple[int, dict | None]] = {}  # feed news for keys being read
        self._refreshing: set[tuple[str, str]] = set()
        self.connected = False
        self.ever_connected = False
        self.connected_at = 0.0
        self.down_since = time.monotonic()
        self._memory_hits = {kind: LOOKUPS.labels(kind, "memory") for kind in records.KINDS}
        self._absent_hits = {kind: LOOKUPS.labels(kind, "absent") for kind in records.KINDS}

    # ---------------------------------------------------------------- reads
    async def get(self, kind: str, key: str, client: str | None = None) -> dict | None:
        """The record, None when known absent; raises Unverifiable, and TooManyMisses when ``client``'s
        budget of misses is spent (see the module docstring)."""
        entry = self._memory[kind].get(key)
        if entry is None:
            until = self._absent[kind].get(key)
            if until is not None:
                if time.monotonic() < until:
                    self._absent_hits[kind].inc()
                    return None
                del self._absent[kind][key]
            if client is not None and self.misses is not None and not self.misses.take(client):
                raise TooManyMisses()
        if entry is not None:
            now = time.monotonic()
            if self.connected and entry.checked >= self.connected_at:
                if now - entry.checked > self.max_age:
                    self._refresh_later(kind, key)
                self._memory_hits[kind].inc()
                return entry.value
            if not self.connected and self._fresh_while_down(entry, now):
                LOOKUPS.labels(kind, "memory_stale").inc()
                return entry.value
        after_outage = entry is not None and self.connected and entry.checked < self.connected_at
        try:
            return await self._load(kind, key, from_database=after_outage)
        except Unverifiable:
            if entry is not None and self._fresh_while_down(entry, time.monotonic()):
                return entry.value
            raise

    def peek(self, kind: str, key: str) -> dict | None:
        """The remembered record without any I/O or freshness check (for background loops)."""
        entry = self._memory[kind].get(key)
        return entry.value if entry is not None else None

    def _fresh_while_down(self, entry: Entry, now: float) -> bool:
        return now - max(entry.checked, self.down_since) <= self.stale_seconds

    async def _load(self, kind: str, key: str, from_database: bool = False) -> dict | None:
        if not self.connected and self.ever_connected:
            raise Unverifiable("the route feed is down")  # fail fast: no connect timeout per request
        token = (kind, key)
        future = self._inflight.get(token)
        if future is not None:
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._inflight[token] = future
        try:
            value = await self._fetch(kind, key, from_database)
            future.set_result(value)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, none is required
        finally:
            self._inflight.pop(token, None)
            self._pushed.pop(token, None)
        return await future

    async def _fetch(self, kind: str, key: str, from_database: bool) -> dict | None:
        stored = None
        if not from_database:
            try:
                raw = await self.redis.get(records.record_key(self.prefix, kind, key))
            except (RedisError, OSError) as exc:
                raise Unverifiable(f"Redis unavailable: {type(exc).__name__}") from exc
            stored = self._trusted(kind, key, raw)
        if stored is None:
            version = time.time_ns()  # before the read: a publisher that read later wins in Redis
            try:
                record = await self.db.load(kind, key)
            except (psycopg.Error, OSError) as exc:
                log.warning("gateway.db_unavailable kind=%s error=%s", kind, type(exc).__name__)
                raise Unverifiable("database unavailable") from exc
            LOOKUPS.labels(kind, "database").inc()
            # Share the read with the other replicas. A plain miss changed nothing, so nothing is broadcast;
            # a re-read after an outage may correct what they remember, so it is. A plain absent answer is
            # kept to this process: writing one per random key would let anyone fill Redis.
            if record is not None or from_database:
                keys, args = records.cas_args(self.prefix, kind, key, version, record, self.record_ttl,
                                              publish=from_database, signing_key=self.signing_key)
                try:
                    await self.redis.eval(records.CAS_SET, len(keys), *keys, *args)
                except (RedisError, OSError):
                    pass
            stored = (version, record)
        else:
            LOOKUPS.labels(kind, "redis").inc()
        pushed = self._pushed.get((kind, key))
        if pushed is not None and pushed[0] > stored[0]:
            stored = pushed
        self._remember(kind, key, *stored)
        return stored[1]

    def _trusted(self, kind: str, key: str, raw: bytes | None) -> tuple[int, dict | None] | None:
        """The stored ``(version, record)``, or None when absent, unsigned, badly signed or too old."""
        try:
            stored = records.parse_stored(raw, f"{kind}:{key}", signing_key=self.signing_key)
        except records.BadSignature as exc:
            RECORDS_REJECTED.labels("redis").inc()
            log.warning("gateway.record_rejected kind=%s reason=%s", kind, exc)
            return None
        # Every write sets the record TTL, so a genuine stored record is never older than that (plus
        # clock skew between hosts); an older one was put back by someone else.
        if stored is not None and stored[0] < time.time_ns() - (self.record_ttl + MAX_SKEW_SECONDS) * 10**9:
            RECORDS_REJECTED.labels("redis_expired").inc()
            return None
        return stored

    def _remember(self, kind: str, key: str, version: int, record: dict | None) -> None:
        memory = self._memory[kind]
        entry = memory.get(key)
        if entry is not None and entry.version > version:
            entry.checked = time.monotonic()
            return
        if entry is None and record is None:
            absent = self._absent[kind]
            absent[key] = time.monotonic() + self.negative_ttl
            absent.move_to_end(key)
            while len(absent) > self.negative_size:
                absent.popitem(last=False)
            return
        memory[key] = Entry(record, version, time.monotonic())
        memory.move_to_end(key)
        while len(memory) > self.size:
            memory.popitem(last=False)

    def _refresh_later(self, kind: str, key: str) -> None:
        token = (kind, key)
        if token in self._refreshing or token in self._inflight:
            return
        self._refreshing.add(token)

        async def refresh() -> None:
            try:
                await self._load(kind, key)
            except Unverifiable:
                pass
            finally:
                self._refreshing.discard(token)

        asyncio.get_running_loop().create_task(refresh())

    # ---------------------------------------------------------------- the feed
    def apply(self, message: bytes | str) -> None:
        """One feed message: update the remembered entry if the message is newer; ignored (and counted)
        unless signed with the record key."""
        try:
            kind, key, version, record = records.parse_feed(message, signing_key=self.signing_key)
        except records.BadSignature as exc:
            RECORDS_REJECTED.labels("feed").inc()
            log.warning("gateway.feed_message_rejected reason=%s", exc)
            return
        if kind not in self._memory:
            return
        self._absent[kind].pop(key, None)
        token = (kind, key)
        if token in self._inflight:
            known = self._pushed.get(token)
            if known is None or known[0] < version:
                self._pushed[token] = (version, record)
        entry = self._memory[kind].get(key)
        if entry is not None:
            if version >= entry.version:
                entry.value, entry.version = record, version
            entry.checked = time.monotonic()
        if kind == "route" and self.on_route is not None and record is not None:
            self.on_route(record)

    async def run_feed(self) -> None:
        """Subscribe to the feed for ever, reconnecting with backoff; keeps ``connected`` true only while
        messages (or pongs) keep arriving."""
        backoff = 0.1
        channel = self.prefix + records.FEED
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                last_heard = last_ping = time.monotonic()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    now = time.monotonic()
                    if message is not None:
                        last_heard = now
                        if message["type"] == "subscribe" and not self.connected:
                            self._up()
                            backoff = 0.1
                        elif message["type"] == "message":
                            self.apply(message["data"])
                    if now - last_ping >= PING_SECONDS:
                        await pubsub.ping()
                        last_ping = now
                    if now - last_heard > SILENT_SECONDS:
                        raise ConnectionError("the feed went silent")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: mark down, reconnect
                self._down(exc)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _up(self) -> None:
        # Messages may have been missed while down: no absent answer from before is trusted.
        for absent in self._absent.values():
            absent.clear()
        self.connected, self.ever_connected = True, True
        self.connected_at = time.monotonic()
        FEED_CONNECTED.set(1)
        log.info("gateway.feed_connected")

    def _down(self, exc: Exception) -> None:
        if self.connected:
            self.down_since = time.monotonic()
            log.warning("gateway.feed_down error=%s", type(exc).__name__)
        self.connected = False
        FEED_CONNECTED.set(0)
