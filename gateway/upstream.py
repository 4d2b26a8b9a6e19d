"""The upstream side of the proxy: a keep-alive pool of HTTP/1.1 connections to the endpoints' Services.

Why not ``aiohttp.ClientSession``: a proxied request through it cost the gateway about 80 us of CPU on
the client side alone (request object, header merging, cookie and trace hooks, timers, payload
registry...), the largest part of the gateway's cost per request; this pool costs about 33 us
(docs/gateway.md, "Performance"). It keeps aiohttp's response side (``ResponseHandler``: its C parser,
flow-controlled ``StreamReader`` payloads and read timeout) and writes the request itself: one ``write``
of a pre-joined head (and the body, when it is in memory).

Contract of ``Upstream.request(method, url, headers, body)`` (an async context manager yielding an
``Answer``; leaving it releases the connection: back to the pool when the request was sent and the
answer read to their ends and both sides allow keep-alive, else closed):

- ``headers`` are sent as given, after ``Host`` (the URL's host and port, as aiohttp sends it); nothing
  else is added (aiohttp added ``Accept: */*`` when absent). A body of ``bytes`` goes with
  ``Content-Length`` (added unless given); a ``StreamReader`` is streamed as it arrives, beside the wait
  for the answer, as is when ``headers`` carry ``Content-Length``, else ``Transfer-Encoding: chunked``.
  No body: methods other than GET/HEAD/OPTIONS/TRACE send ``Content-Length: 0`` (as aiohttp did).
- The answer: interim 1xx answers skipped, no body for HEAD, a body with neither length nor chunks read
  until the upstream closes; never decompressed.
- Errors, as ``gateway.proxy.forward`` handles them: no connection could be made (refused, unreachable,
  unresolvable) -> ``UpstreamConnectError``; connect or read timeout -> ``TimeoutError``; the upstream
  closed or broke the answer -> an ``aiohttp.ClientError``. A reused keep-alive connection found closed
  before any byte of the answer is retried once on a new one for idempotent methods with a body in
  memory or none (as aiohttp does); other requests get the error.
- At most ``limit`` requests in flight at once (so at most that many connections in use); more wait.
  Idle connections close after ``keepalive_timeout`` seconds. Host names are resolved by the loop
  (``getaddrinfo``) for each new connection only; pooled connections skip it.
"""

import asyncio
import ssl as ssl_module
import time
from collections import deque

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # no Content-Length: 0 for these (aiohttp's)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # retried on a stale connection
HIGH_WATER = 64 * 1024  # request body bytes buffered in the kernel's and the loop's buffers before we wait


class UpstreamConnectError(aiohttp.ClientConnectionError):
    """No connection could be made to the upstream (nothing was sent)."""


class UpstreamBadResponse(aiohttp.ClientError):
    """The upstream answered something that is not HTTP/1.x."""


class _Stale(Exception):
    """A reused connection turned out closed before any byte of the answer came back."""


class Answer:
    """The upstream's answer: ``status``, ``reason``, ``headers`` (case-insensitive, read-only),
    ``content_length`` (None when not declared), ``content`` (the body, a ``StreamReader``), ``read()``."""

    __slots__ = ("status", "reason", "headers", "content_length", "content")

    def __init__(self, message, payload: StreamReader):
        self.status, self.reason, self.headers, self.content = message.code, message.reason, message.headers, payload
        length = message.headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None

    async def read(self) -> bytes:
        return await self.content.read()


class Upstream:
    def __init__(self, *, limit: int, connect_timeout: float, read_timeout: float, keepalive_timeout: float = 30.0):
        self.connect_timeout, self.read_timeout, self.keepalive_timeout = connect_timeout, read_timeout, keepalive_timeout
        self._slots = asyncio.Semaphore(limit)  # one per request in flight (idle connections hold none)
        self._idle: dict[tuple[str, str, int], deque[tuple[ResponseHandler, float]]] = {}
        self._ssl: ssl_module.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def request(self, method: str, url, headers: dict, body) -> "_Exchange":
        return _Exchange(self, method, url, headers, body)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for idle in self._idle.values():
            for protocol, _ in idle:
                protocol.close()
        self._idle.clear()

    # ---------------------------------------------------------------- connections
    def _pooled(self, key) -> ResponseHandler | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            protocol, since = idle.pop()  # the most recently used: the likeliest to be alive
            if protocol.is_connected() and not protocol.should_close and now - since < self.keepalive_timeout:
                return protocol
            protocol.close()
        return None

    async def _connect(self, key) -> ResponseHandler:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        ssl = None
        if scheme == "https":
            ssl = self._ssl = self._ssl or ssl_module.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(lambda: ResponseHandler(loop), host, port, ssl=ssl)
        except TimeoutError:
            raise
        except OSError as exc:  # refused, unreachable, unresolvable
            raise UpstreamConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return protocol

    def _release(self, key, protocol: ResponseHandler) -> None:
        """Back to the pool if it can carry another request, else closed."""
        if self._closed or protocol.should_close or not protocol.is_connected():
            protocol.close()
            return
        self._idle.setdefault(key, deque()).append((protocol, time.monotonic()))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive_timeout, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for longer than the keep-alive timeout (a quiet endpoint's)."""
        self._sweeper = None
        cutoff = time.monotonic() - self.keepalive_timeout
        for key, idle in list(self._idle.items()):
            while idle and (idle[0][1] < cutoff or not idle[0][0].is_connected()):
                idle.popleft()[0].close()
            if not idle:
                del self._idle[key]
        if self._idle and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive_timeout, self._sweep)


class _Exchange:
    """One request and its answer on one connection (``Upstream.request``)."""

    __slots__ = ("pool", "method", "url", "headers", "body", "key", "protocol", "answer", "writer")

    def __init__(self, pool: Upstream, method: str, url, headers: dict, body):
        self.pool, self.method, self.url, self.headers, self.body = pool, method, url, headers, body
        self.key = (url.scheme, url.raw_host, url.port)
        self.protocol: ResponseHandler | None = None
        self.answer: Answer | None = None
        self.writer: asyncio.Task | None = None  # a streamed body being sent

    def _head(self) -> tuple[bytes, bool]:
        """The request head, and whether the body goes chunked."""
        url, body, headers = self.url, self.body, self.headers
        host = url.raw_host
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        netloc = host if url.is_default_port() else f"{host}:{url.port}"
        lines = [f"{self.method} {url.raw_path_qs} HTTP/1.1\r\nHost: {netloc}\r\n"]
        has_length = chunked = False
        for name, value in headers.items():
            if "\n" in value or "\r" in value:  # parsed headers cannot hold them; never split a head
                raise ValueError(f"line break in header {name!r}")
            lines.append(f"{name}: {value}\r\n")
            has_length = has_length or name.lower() == "content-length"
        if isinstance(body, bytes):
            if not has_length:
                lines.append(f"Content-Length: {len(body)}\r\n")
        elif body is not None:
            if not has_length:
                lines.append("Transfer-Encoding: chunked\r\n")
                chunked = True
        elif self.method not in NO_BODY_METHODS and not has_length:
            lines.append("Content-Length: 0\r\n")
        lines.append("\r\n")
        # Header values are str decoded by aiohttp's parser with surrogateescape: the same bytes go on.
        return "".join(lines).encode("utf-8", "surrogateescape"), chunked

    async def __aenter__(self) -> Answer:
        pool = self.pool
        await pool._slots.acquire()
        try:
            protocol = pool._pooled(self.key)
            if protocol is not None:
                try:
                    return await self._send(protocol, reused=True)
                except _Stale:
                    if self.method not in IDEMPOTENT:
                        raise aiohttp.ServerDisconnectedError() from None
            return await self._send(await pool._connect(self.key), reused=False)
        except BaseException:
            if self.writer is not None:
                self.writer.cancel()
                self.writer = None
            if self.protocol is not None:
                self.protocol.abort()
                self.protocol = None
            pool._slots.release()
            raise

    async def _send(self, protocol: ResponseHandler, *, reused: bool) -> Answer:
        self.protocol = protocol
        # read_until_eof: an answer with neither a length nor chunks is its bytes until the upstream closes
        # (HTTP/1.0 style), as aiohttp's session reads it.
        protocol.set_response_params(skip_payload=self.method == "HEAD", auto_decompress=False, read_until_eof=True,
                                     read_timeout=self.pool.read_timeout)
        transport = protocol.transport
        head, chunked = self._head()
        body = self.body
        try:
            if body is None or isinstance(body, bytes):
                transport.write(head + body if body else head)  # one system call for an ordinary JSON call
                protocol.start_timeout()  # sock_read counts from the end of the request, as aiohttp's does
            else:
                transport.write(head)
                # Sent beside the wait for the answer, as aiohttp does: an upstream may answer (413, say)
                # before the body's end, or stream its answer while it reads (then waiting for the upload
                # to end first would deadlock once both sides' buffers are full).
                self.writer = asyncio.ensure_future(self._stream(protocol, transport, body, chunked=chunked))
            while True:
                try:
                    message, payload = await protocol.read()
                except HttpProcessingError as exc:
                    raise UpstreamBadResponse(f"bad response: {exc.message}") from exc
                if not 100 <= message.code <= 199 or message.code == 101:
                    break
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionResetError) as exc:
            if reused and not isinstance(body, StreamReader):  # a streamed body cannot be sent again
                protocol.abort()
                self.protocol = None
                raise _Stale() from None
            if isinstance(exc, aiohttp.ClientError):
                raise
            raise aiohttp.ClientOSError(*exc.args) from exc
        self.answer = Answer(message, payload)
        return self.answer

    @staticmethod
    async def _stream(protocol: ResponseHandler, transport, body: StreamReader, *, chunked: bool) -> bool:
        """True once the whole body was written; else the answer's wait fails (unless it came already)."""
        try:
            async for chunk in body.iter_any():
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                if transport.get_write_buffer_size() > HIGH_WATER:
                    await protocol._drain_helper()  # the upstream reads slower than the client sends
            if chunked:
                transport.write(b"0\r\n\r\n")
        except Exception as exc:  # the upstream went away, or the client did mid-upload
            protocol.set_exception(aiohttp.ClientOSError(f"request body not sent: {exc!r}"))
            return False
        protocol.start_timeout()
        return True

    async def __aexit__(self, *exc_info) -> None:
        protocol, self.protocol = self.protocol, None
        writer, self.writer = self.writer, None
        sent = writer is None or (writer.done() and not writer.cancelled() and writer.result())
        if writer is not None and not writer.done():
            writer.cancel()  # the answer is over (or abandoned) before the body: the connection is unusable
        if protocol is None:
            return
        answer = self.answer
        if sent and answer is not None and answer.content.is_eof() and exc_info[0] is None:
            self.pool._release(self.key, protocol)
        else:
            protocol.abort()  # the answer was not read to its end: the connection cannot carry another
        self.pool._slots.release()
