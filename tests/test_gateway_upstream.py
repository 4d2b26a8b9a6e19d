"""``gateway.upstream``, the gateway's pool of keep-alive connections to the endpoints, against raw TCP servers
that answer exactly what each test needs (keep-alive, a connection closed under a pooled request, silence,
interim answers). The pool through the whole gateway is tests/test_gateway.py's."""

import asyncio
from unittest import mock

import aiohttp
import pytest
from yarl import URL

from gateway.upstream import Upstream, UpstreamConnectError
from tests.helpers import free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class RawServer:
    """127.0.0.1:<port>; ``answer(index, head)`` gives the bytes to send for the index-th request on a
    connection (None: close it without answering; ``(bytes, "close")``: send them, then close). Records
    every request head and body."""

    def __init__(self, answer):
        self.answer, self.connections, self.requests = answer, 0, []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_):
        self.server.close()

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        index = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                self.requests.append((head.decode(), body))
                reply = self.answer(index, head)
                index += 1
                if reply is None:
                    break
                close = isinstance(reply, tuple)  # (bytes, "close"): the answer ends where the connection does
                writer.write(reply[0] if close else reply)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def fetch(pool: Upstream, port: int, method: str = "GET", body=None, path: str = "/v1/x?q=1") -> tuple[int, bytes]:
    async def go():
        async with pool.request(method, URL(f"http://127.0.0.1:{port}{path}", encoded=True),
                                {"Content-Type": "application/json"}, body) as answer:
            return answer.status, await answer.read()
    return go()


def run(test):
    asyncio.run(test())


def test_one_keep_alive_connection_carries_sequential_requests_with_one_head_each():
    async def test():
        async with RawServer(lambda i, head: OK) as server:
            pool = Upstream(limit=10, connect_timeout=2, read_timeout=5)
            for _ in range(5):
                assert await fetch(pool, server.port, "POST", b'{"a": 1}') == (200, b"ok")
            assert await fetch(pool, server.port, "GET") == (200, b"ok")
            await pool.close()
        assert server.connections == 1
        head, body = server.requests[0]
        assert head.startswith(f"POST /v1/x?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n")
        assert "Content-Type: application/json\r\n" in head and "Content-Length: 8\r\n" in head and body == b'{"a": 1}'
        assert "Content-Length" not in server.requests[-1][0]  # a GET without a body declares none
    run(test)


def test_a_pooled_connection_closed_under_a_request_is_retried_only_for_idempotent_methods():
    # Each connection answers its first request, then closes on the second without answering: the race
    # of an upstream closing an idle keep-alive connection just as it is reused.
    async def test():
        async with RawServer(lambda i, head: OK if i == 0 else None) as server:
            pool = Upstream(limit=10, connect_timeout=2, read_timeout=5)
            assert await fetch(pool, server.port) == (200, b"ok")
            assert await fetch(pool, server.port, "GET") == (200, b"ok")  # retried on a new connection
            assert server.connections == 2
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await fetch(pool, server.port, "POST", b"{}")  # not idempotent: never sent twice
            assert server.connections == 2
            await pool.close()
    run(test)


def test_unreachable_silent_and_interim_answers():
    async def test():
        pool = Upstream(limit=10, connect_timeout=2, read_timeout=0.3)
        with pytest.raises(UpstreamConnectError):
            await fetch(pool, free_port())
        async with RawServer(lambda i, head: b"") as silent:
            with pytest.raises(TimeoutError):
                await fetch(pool, silent.port)
        early = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK
        async with RawServer(lambda i, head: early) as server:
            assert await fetch(pool, server.port) == (200, b"ok")
        await pool.close()
    run(test)


def test_head_answers_have_no_body_and_keep_the_connection():
    head_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"

    async def test():
        async with RawServer(lambda i, head: head_ok if head.startswith(b"HEAD") else OK) as server:
            pool = Upstream(limit=10, connect_timeout=2, read_timeout=5)
            assert await fetch(pool, server.port, "HEAD") == (200, b"")
            assert await fetch(pool, server.port, "GET") == (200, b"ok")
            await pool.close()
        assert server.connections == 1
    run(test)


def test_an_answer_not_read_to_its_end_closes_its_connection_and_the_limit_waits_for_a_slot():
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab"  # 98 bytes still to come

    async def test():
        async with RawServer(lambda i, head: partial if b"/partial" in head else OK) as server:
            pool = Upstream(limit=1, connect_timeout=2, read_timeout=5)
            url = URL(f"http://127.0.0.1:{server.port}/partial", encoded=True)
            async with pool.request("GET", url, {}, None) as answer:
                assert answer.status == 200 and answer.content_length == 100  # body left unread
                waiting = asyncio.ensure_future(fetch(pool, server.port))
                await asyncio.sleep(0.05)
                assert not waiting.done()  # one request in flight at most
            assert await waiting == (200, b"ok")
            await pool.close()
        assert server.connections == 2
    run(test)


def test_an_answer_that_comes_before_the_end_of_a_streamed_body_is_not_held_back():
    # An upstream may answer (413, or a stream of its own) while the request body still arrives: the
    # answer must reach the caller at once, not after an upload that may never end.
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.streams import StreamReader

    async def test():
        async with RawServer(lambda i, head: OK) as server:
            pool = Upstream(limit=10, connect_timeout=2, read_timeout=5)
            client = BaseProtocol(asyncio.get_running_loop())
            client.transport = mock.Mock()  # the client's connection, still open
            body = StreamReader(client, 2**16, loop=asyncio.get_running_loop())
            body.feed_data(b"first part")  # and no end: the client is still sending
            assert await asyncio.wait_for(fetch(pool, server.port, "POST", body), 5) == (200, b"ok")
            assert "Transfer-Encoding: chunked\r\n" in server.requests[0][0]
            assert await fetch(pool, server.port) == (200, b"ok")
            await pool.close()
        assert server.connections == 2  # a connection whose request was cut short carries no other
    run(test)


def test_an_answer_without_length_or_chunks_is_read_until_the_upstream_closes():
    until_close = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n\ndata: b\n\n"

    async def test():
        async with RawServer(lambda i, head: (until_close, "close")) as server:
            pool = Upstream(limit=10, connect_timeout=2, read_timeout=5)
            assert await fetch(pool, server.port) == (200, b"data: a\n\ndata: b\n\n")
            assert await fetch(pool, server.port) == (200, b"data: a\n\ndata: b\n\n")
            await pool.close()
        assert server.connections == 2  # a connection read to its close is not pooled
    run(test)
