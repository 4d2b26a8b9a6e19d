"""``GET /v2/endpoint/{ns}/{name}/open-metrics``: one endpoint's metrics in the OpenMetrics 1.0 text format.

Families (every sample labelled ``namespace`` and ``endpoint``, the HF names):

- ``endpoint_requests_total{code}``: counter of answers by status class (``1xx`` .. ``5xx``, and
  ``client_closed`` for requests whose client hung up first), with ``_created``;
- ``endpoint_request_duration_seconds``: histogram (cumulative ``le`` buckets, ``_count``, ``_sum``),
  the gateway's bucket bounds (``controlplane.traffic.LATENCY_BOUNDS``);
- ``endpoint_pending_requests``: gauge, requests in flight or held at the gateways now;
- ``endpoint_replicas_current`` / ``endpoint_replicas_desired``: gauges, the ready and target replica
  counts the reconciler last observed (``readyReplica``/``targetReplica`` of the endpoint's status).

The counters come from ``endpoints.traffic.traffic_totals`` (what the gateway counted, see
``controlplane.traffic``), so they only grow until the totals expire after a long idle time.
"""

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from controlplane import traffic as layout

from .models import Endpoint

CONTENT_TYPE = CONTENT_TYPE_LATEST  # application/openmetrics-text; version=1.0.0; charset=utf-8
LABELS = ("namespace", "endpoint")
CODE_LABEL = {"closed": "client_closed"}


class _Families:
    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return self.families


def _bound(value: float) -> str:
    return repr(float(value))


def exposition(endpoint: Endpoint, totals: dict) -> bytes:
    """The OpenMetrics text of ``endpoint`` from ``totals`` (``traffic_totals``), ending ``# EOF``."""
    labels = [endpoint.account.slug, endpoint.name]
    created = totals["created"].timestamp() if totals["created"] else None
    requests = CounterMetricFamily("endpoint_requests", "Answers through the gateway, by status class",
                                   labels=[*LABELS, "code"])
    for name in layout.CLASSES:
        requests.add_metric([*labels, CODE_LABEL.get(name, name)], totals["by_class"][name], created=created)
    duration = HistogramMetricFamily("endpoint_request_duration_seconds", "Time until the answer ended",
                                     labels=LABELS, unit="seconds")
    cumulative, buckets = 0, []
    for bound, count in zip((*layout.LATENCY_BOUNDS, float("inf")), totals["buckets"], strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else _bound(bound), cumulative))
    duration.add_metric(labels, buckets, sum_value=totals["latency_sum_seconds"])
    pending = GaugeMetricFamily("endpoint_pending_requests", "Requests in flight or held at the gateways",
                                labels=LABELS)
    pending.add_metric(labels, totals["pending"])
    current = GaugeMetricFamily("endpoint_replicas_current", "Ready replicas, as last observed", labels=LABELS)
    current.add_metric(labels, endpoint.ready_replica)
    desired = GaugeMetricFamily("endpoint_replicas_desired", "Replicas the endpoint should run, as last observed",
                                labels=LABELS)
    desired.add_metric(labels, endpoint.target_replica)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([requests, duration, pending, current, desired]))
    return generate_latest(registry)
