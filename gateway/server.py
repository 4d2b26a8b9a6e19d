"""The gateway's HTTP server: aiohttp's low-level server with a deadline on reading request headers.

aiohttp closes a connection that sends nothing for ``keepalive_timeout``, but a client that trickles a
request's headers a byte at a time (slowloris) keeps its connection, and a slot of the process, for as
long as it likes. Here, once the first bytes of a request arrive on an idle connection, its headers must
be complete within ``header_timeout`` seconds or the connection is closed (counted in
``gateway_header_timeouts_total``). Bodies are not affected: a slow upload is the endpoint's business.
"""

import asyncio

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .metrics import HEADER_TIMEOUTS


class HeaderDeadlineHandler(RequestHandler):
    __slots__ = ("_header_timeout", "_header_timer")

    def __init__(self, *args, header_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def _waiting_for_headers(self) -> bool:
        # The handler waits for its next request and no complete one is queued: bytes seen now are a
        # request's head in the making.
        return self._waiter is not None and not self._waiter.done() and not self._messages

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers():
            if self._header_timer is None:
                self._header_timer = self._loop.call_later(self._header_timeout, self._headers_too_slow)
        elif self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers():
            HEADER_TIMEOUTS.inc()
            self.force_close()  # closes the transport too

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)


class Server(web.Server):
    """``web.Server`` whose connections are ``HeaderDeadlineHandler`` s."""

    def __init__(self, handler, *, header_timeout: float, **kwargs):
        super().__init__(handler, **kwargs)
        self._header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return HeaderDeadlineHandler(self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs)
