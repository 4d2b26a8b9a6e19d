"""Who the client is, and the per-client budget of lookups that miss memory.

``client_address`` is the peer address, or, behind ``trusted_proxies`` proxies (the Ingress controller),
the address the outermost trusted proxy saw: the entry that many places from the right of
``X-Forwarded-For`` (a client can prepend anything; only what our own proxies appended counts).

``MissBudget`` is a token bucket per client address: ``burst`` misses at once, refilled at ``rate`` per
second. It remembers at most ``clients`` addresses (least recently seen forgotten first), so a flood of
addresses costs bounded memory; a forgotten address starts again with a full bucket.
"""

import time
from collections import OrderedDict

from aiohttp import web

CLIENTS = 65_536


def forwarded_chain(request: web.BaseRequest, trusted_proxies: int) -> list[str]:
    """The addresses vouched for, client first, peer last: the last ``trusted_proxies`` entries of
    ``X-Forwarded-For`` before the peer (all of them, if fewer)."""
    peer = request.remote or ""
    if trusted_proxies <= 0:
        return [peer]
    sent = [a.strip() for v in request.headers.getall("X-Forwarded-For", ()) for a in v.split(",") if a.strip()]
    return [*sent[-trusted_proxies:], peer]


def client_address(request: web.BaseRequest, trusted_proxies: int) -> str:
    return forwarded_chain(request, trusted_proxies)[0]


class MissBudget:
    def __init__(self, rate: float, burst: int, clients: int = CLIENTS):
        self.rate, self.burst, self.clients = rate, burst, clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)

    def take(self, client: str) -> bool:
        """Spend one miss for ``client``: False (nothing spent) when its bucket is empty."""
        now = time.monotonic()
        tokens, at = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
        return allowed
