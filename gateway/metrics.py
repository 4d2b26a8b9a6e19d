"""The gateway's Prometheus metrics, on its own registry (served at ``/metrics`` for the metrics token only).

``gateway_pending_requests{namespace,endpoint}`` counts requests in flight plus held (waiting for a
replica): the series behind the ``pendingRequests`` autoscaling metric (docs/autoscaling.md). The
labels are the endpoint's Kubernetes namespace and object name (``ep-<name>``, the pods'
``app.kubernetes.io/instance``), so a prometheus-adapter rule can spread it over the endpoint's pods.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from controlplane.traffic import LATENCY_BOUNDS

REGISTRY = CollectorRegistry()
LABELS = ("namespace", "endpoint")

REQUESTS = Counter("gateway_requests", "Requests answered, by endpoint and status class",
                   [*LABELS, "code"], registry=REGISTRY)
DURATION = Histogram("gateway_request_duration_seconds", "Request duration until the response ended",
                     LABELS, registry=REGISTRY,
                     buckets=LATENCY_BOUNDS)  # the bounds of the traffic statistics in Redis too
# multiprocess_mode only matters with several workers (``exposition``): what is pending in the pod is the
# sum over its live workers; the feed counts as connected only while every live worker's is.
PENDING = Gauge("gateway_pending_requests", "Requests in flight or held, per endpoint", LABELS, registry=REGISTRY,
                multiprocess_mode="livesum")
HELD = Gauge("gateway_held_requests", "Requests held while the endpoint wakes", LABELS, registry=REGISTRY,
             multiprocess_mode="livesum")
WAKEUPS = Counter("gateway_wakeups", "Wake-ups sent for scaled-to-zero endpoints", LABELS, registry=REGISTRY)
DB_QUERIES = Counter("gateway_db_queries", "SQL statements the gateway ran (cold misses only)", registry=REGISTRY)
LOOKUPS = Counter("gateway_cache_lookups", "Route/token/grant lookups by where the answer came from",
                  ["kind", "source"], registry=REGISTRY)
FEED_CONNECTED = Gauge("gateway_feed_connected", "1 while the Redis route feed is subscribed", registry=REGISTRY,
                       multiprocess_mode="livemin")
RECORDS_REJECTED = Counter("gateway_records_rejected", "Records and feed messages ignored: unsigned, badly signed "
                           "or malformed (someone writes to Redis without the record key)", ["source"],
                           registry=REGISTRY)
MISSES_REFUSED = Counter("gateway_misses_refused", "Requests refused (429) because their client looked up too "
                         "many unknown tokens or hosts", registry=REGISTRY)
HEADER_TIMEOUTS = Counter("gateway_header_timeouts", "Connections closed for sending request headers too slowly",
                          registry=REGISTRY)
TRAFFIC_FLUSH_FAILURES = Counter("gateway_traffic_flush_failures", "Traffic statistics flushes to Redis that "
                                 "failed (their counts are dropped)", registry=REGISTRY)
UNVERIFIABLE = Counter("gateway_unverifiable", "Requests refused because nothing fresh enough could be read",
                       registry=REGISTRY)


def exposition() -> bytes:
    """The metrics page. A single gateway process serves its own registry; a worker of several
    (``gateway.workers`` sets ``PROMETHEUS_MULTIPROC_DIR`` for them, which makes prometheus_client keep
    every value in a per-process file there) serves the sum over all the pod's workers, live and dead
    (counters and histograms), or over the live ones (the gauges, by their ``multiprocess_mode``)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


class EndpointMetrics:
    """The label children of one endpoint, looked up once (``labels()`` takes a lock and hashes)."""

    __slots__ = ("namespace", "endpoint", "pending", "held", "duration", "_codes")

    def __init__(self, namespace: str, endpoint: str):
        self.namespace, self.endpoint = namespace, endpoint
        self.pending = PENDING.labels(namespace, endpoint)
        self.held = HELD.labels(namespace, endpoint)
        self.duration = DURATION.labels(namespace, endpoint)
        self._codes: dict[int, object] = {}

    def answered(self, status: int) -> None:
        klass = status // 100
        child = self._codes.get(klass)
        if child is None:
            child = self._codes[klass] = REQUESTS.labels(self.namespace, self.endpoint, f"{klass}xx")
        child.inc()


_by_endpoint: dict[tuple[str, str], EndpointMetrics] = {}


def for_endpoint(namespace: str, endpoint: str) -> EndpointMetrics:
    key = (namespace, endpoint)
    metrics = _by_endpoint.get(key)
    if metrics is None:
        metrics = _by_endpoint[key] = EndpointMetrics(namespace, endpoint)
    return metrics


class _Unrouted:
    """Answers that reached no endpoint (404, 503 while unverifiable): counted, with empty labels."""

    def __init__(self):
        self._codes: dict[int, object] = {}

    answered = EndpointMetrics.answered
    namespace = endpoint = ""


NO_ENDPOINT = _Unrouted()
