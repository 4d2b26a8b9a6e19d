"""Streaming one request to an endpoint's Service and its response back, both ways unbuffered.

Method, path, query and end-to-end headers pass through; hop-by-hop headers (RFC 9110 §7.6.1, plus any
named in ``Connection``) do not, nor do our API tokens or the client's forwarding headers
(``request_headers`` says which). The request body is streamed upstream as it arrives and the response
body is written to the client chunk by chunk as the upstream produces it (SSE events arrive one by one).
Bodies are never decompressed or re-encoded. The upstream connection pool is ``gateway.upstream``'s.
"""

import base64
import logging

import aiohttp
from aiohttp import web

from controlplane.errorcodes import Code
from controlplane.records import TOKEN_PREFIX

from .clients import forwarded_chain
from .errors import error
from .upstream import Upstream, UpstreamConnectError

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
# Never forwarded upstream: the gateway sets Host itself, and answers Expect and X-Scale-Up-Timeout itself.
REQUEST_DROPPED = HOP_BY_HOP | {"host", "x-scale-up-timeout", "expect"}
# Besides every X-Forwarded-*: what a client could send to pass itself off as another address or scheme.
CLIENT_FORWARDING = frozenset({"forwarded", "x-real-ip"})
# Where a caller may put one of our API tokens (checked value by value, every header of the name).
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
# Bodies with a declared length up to this size are passed in one piece (one write instead of a header
# write plus chunk writes: a third fewer system calls on typical JSON calls). Anything longer, and every
# body without a length (SSE, chunked uploads), is streamed as it arrives.
WHOLE_BODY_BYTES = 64 * 1024


class UpstreamUnreachable(Exception):
    """No connection could be made; nothing was sent, so the request may be retried."""


def _connection_tokens(headers) -> set[str]:
    return {t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(",") if t.strip()}


def carries_control_plane_token(value: str) -> bool:
    """True when a credential header's value holds one of our API tokens in any form: after any scheme
    or none (``Bearer cpt_…``, ``token cpt_…``, ``cpt_…``), in a list, or inside Basic credentials."""
    if TOKEN_PREFIX in value.lower():
        return True
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8", "replace")
        except ValueError:
            return False
        return TOKEN_PREFIX in decoded.lower()
    return False


def request_headers(request: web.BaseRequest, *, forward_authorization: bool, prefix: str = "",
                    trusted_proxies: int = 0) -> dict:
    """The headers sent upstream.

    - ``Authorization`` only to public endpoints, and never a value that carries one of our API tokens
      (``carries_control_plane_token``): the HF client sends the caller's control-plane token on
      inference calls, and a public endpoint's server is someone else's code. Other values pass through.
      ``X-Api-Key`` values carrying one of our tokens are dropped too, for every endpoint type.
    - ``X-Forwarded-*``, ``Forwarded`` and ``X-Real-IP`` from the client are dropped: the gateway sets
      ``X-Forwarded-For`` (the addresses our ``trusted_proxies`` vouch for, then the peer), ``-Proto``
      (the nearest trusted proxy's, else the gateway's own scheme), ``-Host`` and, for path-style calls,
      ``-Prefix``.
    """
    dropped = REQUEST_DROPPED | _connection_tokens(request.headers)
    if not forward_authorization:
        dropped = dropped | {"authorization"}
    headers = {}
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in dropped or lower.startswith("x-forwarded-") or lower in CLIENT_FORWARDING:
            continue
        if lower in CREDENTIAL_HEADERS and carries_control_plane_token(value):
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    headers["X-Forwarded-For"] = ", ".join(forwarded_chain(request, trusted_proxies))
    sent_proto = request.headers.getall("X-Forwarded-Proto", ()) if trusted_proxies > 0 else ()
    proto = sent_proto[-1].rpartition(",")[2].strip().lower() if sent_proto else ""
    headers["X-Forwarded-Proto"] = proto if proto in ("http", "https") else request.scheme
    headers["X-Forwarded-Host"] = request.host
    if prefix:
        headers["X-Forwarded-Prefix"] = prefix
    return headers


async def forward(request: web.BaseRequest, pool: Upstream, url, headers: dict) -> web.StreamResponse:
    """Send the request to ``url`` and stream the answer back. Raises UpstreamUnreachable before anything
    was sent; answers 502/504 itself for failures after that."""
    body = None
    if request.headers.get("Expect", "").lower() == "100-continue":
        # The caller was admitted and the endpoint is ready: invite the body now (the gateway's low-level
        # server has no router to do it).
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if request.body_exists:
        length = request.content_length
        body = await request.read() if length is not None and length <= WHOLE_BODY_BYTES else request.content
    try:
        upstream_cm = pool.request(request.method, url, headers, body)
        upstream = await upstream_cm.__aenter__()
    except UpstreamConnectError as exc:
        raise UpstreamUnreachable(str(exc)) from exc
    except TimeoutError:
        return error(504, Code.UPSTREAM_TIMEOUT, "The endpoint did not answer in time")
    except aiohttp.ClientError as exc:
        log.info("gateway.upstream_failed url=%s error=%s", url.with_query(None), type(exc).__name__)
        return error(502, Code.UPSTREAM_ERROR, "The endpoint closed the connection without answering")
    try:
        length = upstream.content_length
        small = length is not None and length <= WHOLE_BODY_BYTES and request.method != "HEAD"
        response = (web.Response(status=upstream.status, reason=upstream.reason) if small
                    else web.StreamResponse(status=upstream.status, reason=upstream.reason))
        dropped = HOP_BY_HOP | _connection_tokens(upstream.headers) | {"content-length"}
        for name, value in upstream.headers.items():
            if name.lower() not in dropped:
                response.headers.add(name, value)
        if small:
            response.body = await upstream.read()
            return response
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response
    except (aiohttp.ClientError, ConnectionResetError, TimeoutError) as exc:
        transport = request.transport
        if transport is None or transport.is_closing():
            return response  # the client went away mid-response: stop; the upstream connection is dropped
        # The upstream failed mid-body: the status line is gone, so the only signal left is to cut the
        # stream (a clean end would pass a truncated body off as complete).
        log.info("gateway.upstream_broke url=%s error=%s", url.with_query(None), type(exc).__name__)
        transport.close()
        return response
    finally:
        await upstream_cm.__aexit__(None, None, None)
