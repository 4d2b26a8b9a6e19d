"""Per-endpoint traffic statistics: the Redis layout the gateway writes and the control plane reads.

Both sides import this module (standard library only, no Django, no I/O), so the key names, the hash
fields and the latency bucket bounds cannot drift apart. The gateway (``gateway.traffic``) counts in
memory and flushes every ``GATEWAY_ACTIVITY_SECONDS``; ``endpoints.traffic`` reads.

Every key is under ``GATEWAY_REDIS_PREFIX`` and names an endpoint *version*. A version is ``VERSION_RE``
(it never contains ``:``, the key separator).

Versions: ``""`` is the whole endpoint's traffic -- every request, whichever side served it. When a
canary takes a share (``gateway.split``), each request sent to the canary is counted again under the
canary's version (same status class, same latency). So the stable version's traffic is not stored
apart: stable = ``""`` minus the canary's version, field by field. Never add ``""`` and a canary version
together (that counts the canary's requests twice).

- ``traffic:<endpoint id>:<version>:<unix minute>``: a hash of the answers that *ended* in that minute
  (unix minute = ``int(unix seconds // 60)``). Expires ``MINUTE_TTL`` after its last write (25 h: a day
  of history, and the reader never asks further back than ``MINUTE_TTL`` allows).
- ``traffic:<endpoint id>:<version>:total``: the same fields, cumulative since the hash was created
  (its ``created`` field, unix seconds), for monotonic counters (OpenMetrics). Its expiry
  (``TOTALS_TTL``) is refreshed on every write, so only an endpoint idle that long starts over.
- ``traffic:<endpoint id>:<version>:pending``: a hash, one field per gateway process, value
  ``"<pending> <unix seconds until which it holds>"``. Each gateway rewrites its field every flush while
  it has requests in flight or held, removes it when it has none, and prunes fields past their time,
  so a dead gateway's count vanishes within ``pending_ttl(interval)`` seconds.

Hash fields (counts, all integers; absent = 0):

- ``CLASSES``: answers by status class, ``"1xx"`` .. ``"5xx"``, and ``"closed"`` for requests whose
  client hung up before the answer ended (the gateway's own metrics count those as a 4xx, nginx's 499).
- ``bucket_field(i)``: answers whose latency fell in bucket ``i`` -- *not* cumulative: bucket ``i``
  holds latencies in ``(LATENCY_BOUNDS[i-1], LATENCY_BOUNDS[i]]`` seconds (from 0 for ``i == 0``), and
  bucket ``len(LATENCY_BOUNDS)`` those above the last bound. Same bounds as the gateway's
  ``gateway_request_duration_seconds`` histogram.
- ``SUM_FIELD``: the latencies' sum in microseconds.

What is counted: requests that reached an endpoint and passed its access check (the gateway's
``gateway_request_duration_seconds`` population). Refusals before that (401, 403, unknown hosts) are
not the endpoint's traffic: anyone could send them, and they must not move an endpoint's (or a
canary's) error rate. So the classes and the buckets count the same requests.
"""

import re
from collections.abc import Sequence

TRAFFIC = "traffic"
TOTAL = "total"
PENDING = "pending"

# Seconds. The gateway's Prometheus histogram takes its buckets from here too.
LATENCY_BOUNDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BUCKETS = len(LATENCY_BOUNDS) + 1  # the last one: above the last bound
CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx", "closed")
CLOSED = CLASSES.index("closed")
SUM_FIELD = "sum_us"
CREATED_FIELD = "created"

MINUTE_TTL = 25 * 3600
TOTALS_TTL = 35 * 86400
VERSION_RE = re.compile(r"[A-Za-z0-9._-]{0,63}")

# Positions in the gateway's per-(endpoint, version) list of counters, in the order of ``COUNT_FIELDS``.
BUCKET_FIELDS: tuple[str, ...] = tuple(f"b{i}" for i in range(BUCKETS))
COUNT_FIELDS: tuple[str, ...] = (*CLASSES, *BUCKET_FIELDS, SUM_FIELD)
FIRST_BUCKET = len(CLASSES)
SUM = FIRST_BUCKET + BUCKETS


def bucket_field(index: int) -> str:
    return BUCKET_FIELDS[index]


def status_class(status: int) -> int:
    """The ``CLASSES`` index of an HTTP status (anything outside 100-599 counts as 5xx: a fault)."""
    klass = status // 100
    return klass - 1 if 1 <= klass <= 5 else 4


def _check(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise ValueError(f"not a traffic version: {version!r}")
    return version


def minute_key(prefix: str, endpoint_id: int, version: str, minute: int) -> str:
    return f"{prefix}{TRAFFIC}:{endpoint_id}:{_check(version)}:{minute}"


def totals_key(prefix: str, endpoint_id: int, version: str) -> str:
    return f"{prefix}{TRAFFIC}:{endpoint_id}:{_check(version)}:{TOTAL}"


def pending_key(prefix: str, endpoint_id: int, version: str) -> str:
    return f"{prefix}{TRAFFIC}:{endpoint_id}:{_check(version)}:{PENDING}"


def pending_ttl(interval: float) -> int:
    """Seconds a gateway's pending count holds: three flushes, so one slow flush does not blank it."""
    return max(10, int(3 * interval) + 1)


# KEYS[1] the pending hash; ARGV: gateway id, pending count, now (unix seconds), ttl seconds.
# Writes (or, for 0, removes) this gateway's field and prunes every field whose time has passed.
PENDING_SET = """
local now = tonumber(ARGV[3])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[4])))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local until_ = tonumber(string.match(fields[i + 1], ' (%S+)$') or '0')
  if not until_ or until_ < now then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if redis.call('HLEN', KEYS[1]) > 0 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return 1
"""


def pending_sum(fields: dict, now: float) -> int:
    """The pending count of a pending hash (``HGETALL``), ignoring fields past their time or malformed."""
    total = 0
    for raw in fields.values():
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        count, _, until = value.partition(" ")
        try:
            if float(until) >= now:
                total += max(int(count), 0)
        except ValueError:
            continue
    return total


def parse_counts(fields: dict) -> dict[str, int]:
    """``COUNT_FIELDS`` of a minute or totals hash (``HGETALL``, bytes or str) as ints, absent ones 0."""
    decoded = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    counts = {}
    for name in COUNT_FIELDS:
        try:
            counts[name] = int(decoded.get(name, 0))
        except ValueError:
            counts[name] = 0
    return counts


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 <= q <= 1) in seconds of the latencies counted in ``buckets`` (non-cumulative,
    ``BUCKETS`` long, as stored), by linear interpolation inside the bucket the rank falls in (the first
    bucket starts at 0), as Prometheus' ``histogram_quantile`` does. A rank in the overflow bucket gives
    the last bound (nothing is known above it). None when nothing was counted."""
    if not 0 <= q <= 1:
        raise ValueError("q must be between 0 and 1")
    if len(buckets) != BUCKETS:
        raise ValueError(f"expected {BUCKETS} buckets, got {len(buckets)}")
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(buckets):
        if count > 0 and below + count >= rank:
            if index == len(LATENCY_BOUNDS):
                return float(LATENCY_BOUNDS[-1])
            lower = LATENCY_BOUNDS[index - 1] if index else 0.0
            upper = LATENCY_BOUNDS[index]
            return lower + (upper - lower) * max(rank - below, 0) / count
        below += count
    return float(LATENCY_BOUNDS[-1])  # unreachable: the last non-empty bucket always holds the rank
