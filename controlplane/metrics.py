"""Prometheus metrics of the control plane, read from Postgres at scrape time.

Reading the database on scrape keeps every web process's answer identical (no per-process counters to
aggregate) and costs two grouped queries.
"""

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily


class EndpointCollector:
    def collect(self):
        from django.db.models import Count

        from endpoints.models import Endpoint

        states = GaugeMetricFamily("controlplane_endpoints", "Endpoints by state", labels=["state"])
        for row in Endpoint.objects.values("state").annotate(n=Count("id")).order_by():
            states.add_metric([row["state"]], row["n"])
        yield states
        lagging = GaugeMetricFamily("controlplane_endpoints_unconverged",
                                    "Endpoints whose observed generation is behind their spec")
        from django.db.models import F

        lagging.add_metric([], Endpoint.objects.filter(observed_generation__lt=F("generation")).count())
        yield lagging


REGISTRY = CollectorRegistry()
REGISTRY.register(EndpointCollector())
