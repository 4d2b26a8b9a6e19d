"""The control plane's Prometheus registry, served at ``/metrics``.

Apps register collectors that read Postgres at scrape time (``endpoints.metrics``): every web process then
answers the same, with no per-process counters to aggregate.
"""

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry()
