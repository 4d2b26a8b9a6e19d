"""Endpoint gauges for the control plane's ``/metrics``, read from Postgres at scrape time (two grouped queries)."""

from django.db.models import Count, F
from prometheus_client.core import GaugeMetricFamily

from .models import Endpoint


class EndpointCollector:
    def collect(self):
        states = GaugeMetricFamily("controlplane_endpoints", "Endpoints by state", labels=["state"])
        for row in Endpoint.objects.values("state").annotate(n=Count("id")).order_by():
            states.add_metric([row["state"]], row["n"])
        yield states
        lagging = GaugeMetricFamily("controlplane_endpoints_unconverged",
                                    "Endpoints whose observed generation is behind their spec")
        lagging.add_metric([], Endpoint.objects.filter(observed_generation__lt=F("generation")).count())
        yield lagging
