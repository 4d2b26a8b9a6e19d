"""Reading the traffic statistics the gateway writes to Redis (layout: ``controlplane.traffic``).

Two readers, each one Redis round trip:

- ``traffic_series``: per-minute points over a window (console charts; a canary gate comparing versions);
- ``traffic_totals``: cumulative counters and the current pending count (``/open-metrics``).

Both raise ``redis.RedisError`` when Redis cannot be read: a caller must not take "unreadable" for
"no traffic" (a chart would show a false outage, a canary gate would pass on no evidence).

What is counted (see ``controlplane.traffic``): requests that reached the endpoint through the gateway
and passed its access check; the minute of a request is the minute its answer ended.

Versions (``controlplane.traffic``): ``""`` is the whole endpoint's traffic, every request whichever side
served it; a canary's version counts the canary's share again (each request sent to the canary is in
both). So stable = whole - canary: subtract the canary version's counts from ``""``'s, never add them.
``version=None`` means the whole endpoint, i.e. version ``""`` (``ALL_VERSIONS``); a caller passes a
canary's version to see the canary alone.
"""

import time
from datetime import UTC, datetime

from django.conf import settings

from controlplane import traffic as layout
from controlplane.feed import redis_client

ALL_VERSIONS: tuple[str, ...] = ("",)
# The farthest back a series can reach: per-minute hashes expire after MINUTE_TTL.
MAX_MINUTES = layout.MINUTE_TTL // 60
QUANTILES = (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))


def _versions(version: str | None) -> tuple[str, ...]:
    return ALL_VERSIONS if version is None else (version,)


def _minute(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("traffic windows take aware datetimes")
    return int(moment.timestamp() // 60)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _summed(hashes: list[dict]) -> dict[str, int]:
    total = dict.fromkeys(layout.COUNT_FIELDS, 0)
    for fields in hashes:
        for name, n in layout.parse_counts(fields).items():
            total[name] += n
    return total


def _point(counts: dict[str, int]) -> dict:
    by_class = {name: counts[name] for name in layout.CLASSES}
    buckets = [counts[name] for name in layout.BUCKET_FIELDS]
    point = {"requests": sum(by_class.values()), "by_class": by_class, "errors": by_class["5xx"],
             "buckets": buckets, "latency_sum_ms": counts[layout.SUM_FIELD] / 1000}
    for key, q in QUANTILES:
        point[key] = _ms(layout.quantile(buckets, q))
    return point


def traffic_series(endpoint_id: int, start: datetime, end: datetime, version: str | None = None) -> list[dict]:
    """One point per minute ``m`` with ``start <= m < end`` (``start`` taken down to its minute; aware
    datetimes), oldest first, every minute present (zeros when nothing was answered).

    Each point::

        {"minute": <aware UTC datetime, the minute's start>,
         "requests": <answers that ended in the minute>,
         "by_class": {"1xx", "2xx", "3xx", "4xx", "5xx", "closed": <count>},   # sum = requests
         "errors": <the 5xx count>,
         "p50_ms", "p95_ms", "p99_ms": <latency quantile estimates in ms, None when requests == 0>,
         "buckets": <latency counts per bucket, not cumulative, len(controlplane.traffic.BUCKETS)>,
         "latency_sum_ms": <sum of the latencies>}

    "closed" counts requests whose client hung up first (no status reached them). Quantiles are
    estimated from the buckets (``controlplane.traffic.quantile``: linear inside a bucket, capped at the
    last bound, 300 s), so they are as coarse as the bucket bounds. Per-minute quantiles cannot be
    averaged: to compare windows (a canary against its baseline), add the points' ``buckets`` and call
    ``quantile`` on the sums.

    ``version``: None = the endpoint's whole traffic (see the module docstring), else that version only.
    Raises ValueError for a naive datetime or a window longer than ``MAX_MINUTES`` (older minutes are
    expired anyway); ``redis.RedisError`` when Redis cannot be read. One round trip (a pipeline of one
    HGETALL per minute and version).
    """
    first, last = _minute(start), _minute(end)
    if end.timestamp() > last * 60:
        last += 1  # ``end`` inside a minute: that minute starts before ``end``, so it is in the window
    minutes = list(range(first, max(first, last)))
    if len(minutes) > MAX_MINUTES:
        raise ValueError(f"a traffic window spans at most {MAX_MINUTES} minutes")
    if not minutes:
        return []
    versions = _versions(version)
    prefix = settings.GATEWAY_REDIS_PREFIX
    pipe = redis_client().pipeline(transaction=False)
    for minute in minutes:
        for v in versions:
            pipe.hgetall(layout.minute_key(prefix, endpoint_id, v, minute))
    replies = pipe.execute()
    points = []
    for i, minute in enumerate(minutes):
        hashes = replies[i * len(versions):(i + 1) * len(versions)]
        points.append({"minute": datetime.fromtimestamp(minute * 60, tz=UTC), **_point(_summed(hashes))})
    return points


def traffic_totals(endpoint_id: int, version: str | None = None) -> dict:
    """The cumulative counts of the endpoint (``version`` as in ``traffic_series``) and its pending requests::

        {"requests": <answers counted since ``created``>,
         "by_class": {"1xx", ..., "5xx", "closed": <count>},
         "buckets": <latency counts per bucket, not cumulative (controlplane.traffic.LATENCY_BOUNDS)>,
         "latency_sum_seconds": <float>,
         "created": <aware datetime the counting started, None if nothing was ever counted>,
         "pending": <requests in flight or held now, summed over live gateway processes>}

    The counts only grow, except when the totals expire after ``TOTALS_TTL`` without traffic (then they
    start over, with a new ``created``): fit for OpenMetrics counters. Raises ``redis.RedisError`` when
    Redis cannot be read. One round trip.
    """
    versions = _versions(version)
    prefix = settings.GATEWAY_REDIS_PREFIX
    pipe = redis_client().pipeline(transaction=False)
    for v in versions:
        pipe.hgetall(layout.totals_key(prefix, endpoint_id, v))
        pipe.hgetall(layout.pending_key(prefix, endpoint_id, v))
    replies = pipe.execute()
    totals, pendings = replies[0::2], replies[1::2]
    counts = _summed(totals)
    created = []
    for fields in totals:
        raw = fields.get(layout.CREATED_FIELD.encode(), fields.get(layout.CREATED_FIELD))
        try:
            created.append(int(raw))
        except (TypeError, ValueError):
            continue
    now = time.time()
    by_class = {name: counts[name] for name in layout.CLASSES}
    return {"requests": sum(by_class.values()), "by_class": by_class,
            "buckets": [counts[name] for name in layout.BUCKET_FIELDS],
            "latency_sum_seconds": counts[layout.SUM_FIELD] / 1_000_000,
            "created": datetime.fromtimestamp(min(created), tz=UTC) if created else None,
            "pending": sum(layout.pending_sum(fields, now) for fields in pendings)}

