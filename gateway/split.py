"""Splitting an endpoint's traffic between its stable version and a canary, by weight.

A route record (``controlplane.records.route_record``) may carry ``"canary"``: None/absent, or
``{"upstream": <canary Service base URL, no trailing slash>, "weight": <int 0..100, percent of requests>,
"sticky": <bool>, "version": <traffic version, controlplane.traffic.VERSION_RE>}``.

``choose`` picks the canary (returns its dict) or the stable version (returns None) for one request:

- no canary, or weight 0 -> stable; weight 100 -> canary;
- not sticky: a random draw per request, canary with probability ``weight / 100``;
- sticky: ``bucket(route id, caller key) < weight``, where the bucket is a hash of both mod 100 and the
  caller key is the request's Authorization header value, else the client address. A caller therefore
  always lands on the same side while the weight stays, and raising the weight only moves callers from
  stable to canary, never back.

A malformed canary (a weight that is not an int in 0..100, no upstream, a version the traffic keys cannot
carry) is treated as no canary: the endpoint's stable version serves, as it did before canaries existed.

Cheap on the hot path: for a route without a canary, one dict lookup and nothing allocated.
"""

import hashlib
import random

from controlplane.traffic import VERSION_RE

BUCKETS = 100


def bucket(route_id: int, caller: str) -> int:
    """The caller's fixed bucket, 0..99, for the endpoint ``route_id`` (independent between endpoints)."""
    digest = hashlib.blake2b(f"{route_id}:{caller}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def valid(canary) -> bool:
    if not isinstance(canary, dict):
        return False
    weight, upstream, version = canary.get("weight"), canary.get("upstream"), canary.get("version")
    return (isinstance(weight, int) and not isinstance(weight, bool) and 0 <= weight <= 100
            and isinstance(upstream, str) and bool(upstream)
            and isinstance(version, str) and VERSION_RE.fullmatch(version) is not None)


def choose(route: dict, authorization: str | None, client: str, draw=random.random) -> dict | None:
    """The canary dict when this request goes to the canary, else None (the stable ``route["upstream"]``).

    ``authorization``: the request's Authorization header (None when absent); ``client``: its address
    (``gateway.clients.client_address``); ``draw``: a uniform draw in [0, 1) for non-sticky splits."""
    canary = route.get("canary")
    if not canary:
        return None
    if not valid(canary):
        return None
    weight = canary["weight"]
    if weight <= 0:
        return None
    if weight >= BUCKETS:
        return canary
    if canary.get("sticky"):
        return canary if bucket(route["id"], authorization or client) < weight else None
    return canary if draw() * BUCKETS < weight else None
