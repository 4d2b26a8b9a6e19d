"""Last-request times per endpoint, for the idle scale-to-zero sweep (``endpoints.idle``).

Writes go to the sorted set ``<prefix>activity`` (member = endpoint id, score = unix seconds) with
``ZADD GT``, so concurrent gateway replicas only ever move a time forward. A request costs a dict lookup;
Redis is written at most once per ``interval`` per endpoint, plus once per interval for endpoints with
requests still in flight (a long stream keeps its endpoint awake). Failures are logged, never raised.
"""

import asyncio
import logging
import time

from redis.exceptions import RedisError

from controlplane.records import ACTIVITY

log = logging.getLogger(__name__)


class Activity:
    def __init__(self, redis, prefix: str, interval: float):
        self.redis, self.key, self.interval = redis, prefix + ACTIVITY, interval
        self.in_flight: dict[int, int] = {}
        self._written: dict[int, float] = {}
        self._tasks: set[asyncio.Task] = set()

    def begin(self, endpoint_id: int) -> None:
        self.in_flight[endpoint_id] = self.in_flight.get(endpoint_id, 0) + 1
        now = time.monotonic()
        if now - self._written.get(endpoint_id, -1e18) >= self.interval:
            self._written[endpoint_id] = now
            task = asyncio.get_running_loop().create_task(self._write([endpoint_id]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def end(self, endpoint_id: int) -> None:
        left = self.in_flight.get(endpoint_id, 1) - 1
        if left > 0:
            self.in_flight[endpoint_id] = left
        else:
            self.in_flight.pop(endpoint_id, None)

    async def _write(self, endpoint_ids: list[int]) -> None:
        now = time.time()
        try:
            await self.redis.zadd(self.key, {str(i): now for i in endpoint_ids}, gt=True)
        except (RedisError, OSError) as exc:
            log.debug("gateway.activity_write_failed error=%s", type(exc).__name__)

    async def run(self) -> None:
        """Every interval, touch the endpoints that still have requests in flight."""
        while True:
            await asyncio.sleep(self.interval)
            busy = [i for i, n in self.in_flight.items() if n > 0]
            if busy:
                now = time.monotonic()
                for endpoint_id in busy:
                    self._written[endpoint_id] = now
                await self._write(busy)
