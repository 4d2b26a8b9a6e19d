"""Holding requests while an endpoint wakes from zero (or is still starting), and sending the wake-up.

A request for an endpoint that has no replica yet waits in its endpoint's queue until one is ready,
then goes upstream; nothing is dropped while the cold start lasts.

- ``Holds.hold(route, timeout, client)`` waits. True once a replica is ready; False when ``timeout``
  passes (the caller answers 503 with Retry-After); raises ``QueueFull`` when ``limit`` requests already
  wait for this endpoint, and ``ClientQueueFull`` when ``client_limit`` requests from the same client
  address already wait (for any endpoint), so anonymous callers of a public endpoint cannot fill its
  queue alone (the caller answers 429 to both). Only addresses with a request held are remembered.
- Ready means: the feed reports the endpoint ``running`` (or ``updating`` / ``updateFailed``, whose older
  replicas serve), or, once the wake has been taken (intent back to run), the endpoint's health route
  answers 200 through its Service. The probe usually wins: it does not wait for the reconciler's
  next status write.
- A scaled-to-zero endpoint is woken with the Celery task ``workers.endpoint_wake`` (by name: the
  gateway imports no task code), sent again every ``resend`` seconds while the route still says
  scale-to-zero, in case a message was lost.
"""

import asyncio
import logging
import time

import aiohttp
from celery import Celery

from controlplane.records import WAKE_TASK

from .metrics import WAKEUPS

log = logging.getLogger(__name__)
SERVING = frozenset({"running", "updating", "updateFailed"})


class QueueFull(Exception):
    pass


class ClientQueueFull(Exception):
    pass


def serving(route: dict) -> bool:
    return route["intent"] == "run" and route["state"] in SERVING


class Waker:
    """Sends ``workers.endpoint_wake`` through the broker (a blocking kombu publish, run in a thread)."""

    def __init__(self, broker_url: str, queue: str):
        self.queue = queue
        self.app = Celery("gateway", broker=broker_url, fixups=[], set_as_current=False)
        self.app.conf.broker_transport_options = {"socket_connect_timeout": 2, "socket_timeout": 5}
        self.app.conf.broker_connection_retry_on_startup = False

    async def wake(self, endpoint_id: int) -> bool:
        try:
            await asyncio.to_thread(self.app.send_task, WAKE_TASK, args=[endpoint_id], queue=self.queue, retry=False)
            return True
        except Exception as exc:  # the broker is down; the hold re-sends, the caller still times out cleanly
            log.warning("gateway.wake_failed endpoint=%s error=%s", endpoint_id, type(exc).__name__)
            return False


class _Queue:
    __slots__ = ("count", "ready", "probe")

    def __init__(self):
        self.count = 0
        self.ready = asyncio.Event()
        self.probe: asyncio.Task | None = None


class Holds:
    def __init__(self, *, session: aiohttp.ClientSession, waker: Waker, lookup, limit: int, client_limit: int,
                 probe_interval: float, resend: float):
        """``lookup(host)`` returns the current route (from memory) or None."""
        self.session, self.waker, self.lookup = session, waker, lookup
        self.limit, self.client_limit, self.probe_interval, self.resend = limit, client_limit, probe_interval, resend
        self._queues: dict[int, _Queue] = {}
        self._by_client: dict[str, int] = {}
        self._last_wake: dict[int, float] = {}
        self._sending: set[asyncio.Task] = set()

    def waiting(self, endpoint_id: int) -> int:
        queue = self._queues.get(endpoint_id)
        return queue.count if queue else 0

    def notify(self, route: dict) -> None:
        """Feed hook: release the endpoint's queue as soon as its route says a replica serves."""
        queue = self._queues.get(route["id"])
        if queue is not None and serving(route):
            queue.ready.set()

    def kick(self, route: dict) -> None:
        """Send the wake-up if the route says scaled to zero and none was sent in the last ``resend`` seconds.
        The send runs on its own: a request that stops waiting does not cancel it."""
        if route["intent"] != "scale_to_zero":
            return
        now = time.monotonic()
        if now - self._last_wake.get(route["id"], -1e18) < self.resend:
            return
        self._last_wake[route["id"]] = now
        WAKEUPS.labels(route["namespace"], route["object"]).inc()
        log.info("gateway.wake endpoint=%s", route["id"])
        task = asyncio.get_running_loop().create_task(self.waker.wake(route["id"]))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def hold(self, route: dict, timeout: float, client: str) -> bool:
        self.kick(route)
        held_by_client = self._by_client.get(client, 0)
        if held_by_client >= self.client_limit:
            raise ClientQueueFull()
        queue = self._queues.get(route["id"])
        if queue is None:
            queue = self._queues[route["id"]] = _Queue()
        if queue.count >= self.limit:
            raise QueueFull()
        queue.count += 1
        self._by_client[client] = held_by_client + 1
        try:
            if queue.probe is None or queue.probe.done():
                queue.probe = asyncio.get_running_loop().create_task(self._watch(route["host"], queue))
            try:
                await asyncio.wait_for(queue.ready.wait(), timeout)
                return True
            except TimeoutError:
                return False
        finally:
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]
            queue.count -= 1
            if queue.count == 0:
                if queue.probe is not None:
                    queue.probe.cancel()
                if self._queues.get(route["id"]) is queue:
                    del self._queues[route["id"]]

    async def _watch(self, host: str, queue: _Queue) -> None:
        """Wake (and re-wake) while scaled to zero; probe the health route once the wake is taken."""
        while not queue.ready.is_set():
            route = self.lookup(host)
            if route is None:
                return
            if serving(route):
                queue.ready.set()
                return
            if route["intent"] == "scale_to_zero":
                self.kick(route)
            elif route["intent"] == "run" and route["upstream"] and await self._healthy(route):
                queue.ready.set()
                return
            await asyncio.sleep(self.probe_interval)

    async def _healthy(self, route: dict) -> bool:
        try:
            async with self.session.get(route["upstream"] + route["health"],
                                        timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
