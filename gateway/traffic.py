"""Per-endpoint traffic counts (status classes, latency buckets, pending), flushed to Redis for the control
plane (``endpoints.traffic``); the key layout is ``controlplane.traffic``'s.

The hot path is a dict lookup (``counters``) and a few int increments on a preallocated list
(``begin``/``end``): no allocation per request. Every ``interval`` seconds, and at each minute boundary
(so each flush's counts belong to one minute), ``run`` takes the counts and writes them with one
pipelined round trip: HINCRBY into the minute hash and the totals hash, and this process's pending count.
A failed flush (Redis down, slow) is logged at debug and counted (``gateway_traffic_flush_failures``);
its counts are dropped, never retried: requests are never held up by statistics, and memory stays bounded.
"""

import asyncio
import bisect
import logging
import os
import socket
import time
import uuid

from redis.exceptions import RedisError

from controlplane import traffic as layout

from . import metrics

log = logging.getLogger(__name__)

COUNTS = len(layout.COUNT_FIELDS)
PENDING = COUNTS  # slots after the counts: pending now, pending last written
WRITTEN = COUNTS + 1
_BOUNDS = layout.LATENCY_BOUNDS
_FIRST_BUCKET, _SUM = layout.FIRST_BUCKET, layout.SUM


class Traffic:
    """One gateway process's counts. Per request: ``slots = counters(endpoint id)``, ``begin(slots)`` when it
    is admitted, ``end(slots, klass, seconds)`` when its answer ended (``klass``: a ``CLASSES`` index),
    with no await between ``counters`` and ``begin`` (a flush forgets lists no request holds). ``run``
    flushes forever; ``close`` flushes a last time."""

    def __init__(self, redis, prefix: str, interval: float):
        self.redis, self.prefix, self.interval = redis, prefix, interval
        self.gateway_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pending_ttl = layout.pending_ttl(interval)
        # endpoint id -> version -> [*counts (COUNT_FIELDS order), pending, pending last written]
        self._counters: dict[int, dict[str, list[int]]] = {}

    # ---------------------------------------------------------------- hot path
    def counters(self, endpoint_id: int, version: str = "") -> list[int]:
        """The counter list of one endpoint version, to pass to ``begin`` and ``end``."""
        versions = self._counters.get(endpoint_id)
        if versions is None:
            versions = self._counters[endpoint_id] = {}
        slots = versions.get(version)
        if slots is None:
            layout.minute_key("", endpoint_id, version, 0)  # refuses a version the keys cannot carry
            slots = versions[version] = [0] * (COUNTS + 2)
        return slots

    @staticmethod
    def begin(slots: list[int]) -> None:
        slots[PENDING] += 1

    @staticmethod
    def end(slots: list[int], klass: int, seconds: float) -> None:
        """One answer of ``CLASSES`` index ``klass`` that took ``seconds``."""
        slots[PENDING] -= 1
        slots[klass] += 1
        slots[_FIRST_BUCKET + bisect.bisect_left(_BOUNDS, seconds)] += 1
        slots[_SUM] += int(seconds * 1_000_000)

    # ---------------------------------------------------------------- flushing
    def _take(self) -> list[tuple[int, str, list[int], int | None]]:
        """(endpoint id, version, counts, pending to write or None) per counter list with news, zeroing
        the counts; drops idle lists. Synchronous: no request can count in between."""
        taken = []
        for endpoint_id, versions in list(self._counters.items()):
            for version, slots in list(versions.items()):
                counts = slots[:COUNTS]
                pending = slots[PENDING]
                write_pending = pending if pending > 0 or slots[WRITTEN] > 0 else None
                if any(counts) or write_pending is not None:
                    slots[:COUNTS] = [0] * COUNTS
                    taken.append((endpoint_id, version, counts, write_pending))
                    slots[WRITTEN] = pending
                elif pending == 0:
                    # Idle (no request holds this list: pending is 0): forget it, so memory follows the
                    # endpoints in use, not every endpoint ever served.
                    del versions[version]
            if not versions:
                del self._counters[endpoint_id]
        return taken

    async def flush(self, minute: int | None = None) -> bool:
        """Write what was counted since the last flush into ``minute`` (default: now). False if the write
        failed (its counts are lost)."""
        taken = self._take()
        if not taken:
            return True
        now = time.time()
        minute = int(now // 60) if minute is None else minute
        pipe = self.redis.pipeline(transaction=False)
        for endpoint_id, version, counts, pending in taken:
            if any(counts):
                fields = [(name, n) for name, n in zip(layout.COUNT_FIELDS, counts, strict=True) if n]
                per_minute = layout.minute_key(self.prefix, endpoint_id, version, minute)
                totals = layout.totals_key(self.prefix, endpoint_id, version)
                for name, n in fields:
                    pipe.hincrby(per_minute, name, n)
                    pipe.hincrby(totals, name, n)
                pipe.expire(per_minute, layout.MINUTE_TTL)
                pipe.hsetnx(totals, layout.CREATED_FIELD, int(now))
                pipe.expire(totals, layout.TOTALS_TTL)
            if pending is not None:
                pipe.eval(layout.PENDING_SET, 1, layout.pending_key(self.prefix, endpoint_id, version),
                          self.gateway_id, max(pending, 0), int(now), self.pending_ttl)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            metrics.TRAFFIC_FLUSH_FAILURES.inc()
            log.debug("gateway.traffic_flush_failed error=%s endpoints=%d", type(exc).__name__, len(taken))
            return False
        return True

    async def run(self) -> None:
        """Flush every interval and at every minute boundary, forever."""
        while True:
            now = time.time()
            minute = int(now // 60)
            # A hair past the boundary, so the window's counts are the minute's (the timer may fire early).
            await asyncio.sleep(max(0.0, min(self.interval, (minute + 1) * 60 - now + 0.001)))
            try:
                await self.flush(minute)
            except Exception:  # a bug here must not end the statistics for the process's lifetime
                metrics.TRAFFIC_FLUSH_FAILURES.inc()
                log.exception("gateway.traffic_flush_crashed")

    async def close(self, timeout: float = 2.0) -> None:
        """Last flush on shutdown (counts so far, and this process's pending count removed)."""
        for versions in self._counters.values():
            for slots in versions.values():
                slots[PENDING] = 0  # nothing this process holds is pending any more for anyone else
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            metrics.TRAFFIC_FLUSH_FAILURES.inc()
