"""The SSRF guard of outbound webhook requests.

A webhook URL is tenant input that the control plane's own network then requests, so:

- only ``http``/``https`` URLs with a host and no credentials are taken;
- every address the host resolves to must be public: loopback, link-local (169.254/16, cloud metadata
  included; fe80::/10), private (RFC 1918, 100.64/10, fc00::/7), unspecified, multicast and reserved
  addresses are refused, unless an operator put them in ``WEBHOOK_ALLOWED_CIDRS``;
- the check runs when a subscription is written (a 400 naming ``url``) and again before every attempt,
  after resolving the name: the sender connects to the very address it checked (``Resolved.address``),
  never resolving twice, so a name that later resolves elsewhere (DNS rebinding) cannot slip through.
"""

import ipaddress
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

RESOLVE_TIMEOUT_SECONDS = 3.0
_resolvers: dict[int, ThreadPoolExecutor] = {}


def _resolver() -> ThreadPoolExecutor:
    """This process's lookup threads (getaddrinfo has no timeout of its own). Per process id: a pool
    inherited through fork (gunicorn, Celery's prefork pool) would have no threads behind it."""
    pid = os.getpid()
    if pid not in _resolvers:
        _resolvers.clear()
        _resolvers[pid] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")
    return _resolvers[pid]


class AddressRefused(ValueError):
    """The URL is not one the control plane requests; the message says why (safe to show the tenant)."""


@dataclass(frozen=True)
class Resolved:
    """A URL checked and pinned: connect to ``address``, send ``host`` as the Host header (and TLS name)."""

    scheme: str
    host: str
    port: int
    address: str
    target: str  # path and query, what the request line carries


@lru_cache(maxsize=8)
def _allowed(cidrs: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def address_allowed(address: str) -> bool:
    """Whether the control plane may connect to ``address`` (an IP literal)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip.version == net.version and ip in net for net in _allowed(tuple(settings.WEBHOOK_ALLOWED_CIDRS))):
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_private or ip.is_loopback
                                 or ip.is_link_local or ip.is_unspecified)


def url_parse(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, target)`` of a webhook URL, or AddressRefused saying what is wrong."""
    if not isinstance(url, str) or len(url) > 2048 or any(c.isspace() or ord(c) < 32 for c in url):
        raise AddressRefused("must be an http(s) URL of at most 2048 characters, without spaces")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise AddressRefused("must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("must not carry credentials (user:password@)")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise AddressRefused("has an invalid port") from exc
    if not host:
        raise AddressRefused("must name a host")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host.rstrip("."), port or (443 if scheme == "https" else 80), target


def _lookup(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def resolve(url: str) -> Resolved:
    """Check ``url`` and pin one address of its host; AddressRefused when the URL is malformed, the name
    does not resolve (within RESOLVE_TIMEOUT_SECONDS) or any address it resolves to is not allowed (a name
    answering with one public and one internal address is refused, whichever would be picked)."""
    scheme, host, port, target = url_parse(url)
    literal = True
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        literal = False
        future = _resolver().submit(_lookup, host, port)
        try:
            addresses = future.result(timeout=RESOLVE_TIMEOUT_SECONDS)
        except FutureTimeout as exc:
            raise AddressRefused(f"the host {host!r} did not resolve in time") from exc
        except (OSError, UnicodeError) as exc:
            raise AddressRefused(f"the host {host!r} does not resolve") from exc
    if not addresses:
        raise AddressRefused(f"the host {host!r} does not resolve")
    for address in addresses:
        if not address_allowed(address):
            # A name's internal address is not told back: the message reaches the tenant (the API, the
            # delivery log), who must not map the internal network through it.
            what = f"{address} is" if literal else f"the host {host!r} resolves to"
            raise AddressRefused(f"{what} an address webhooks may not reach (loopback, link-local, private, "
                                 "multicast or reserved)")
    return Resolved(scheme=scheme, host=host, port=port, address=addresses[0], target=target)
