"""Gunicorn settings of the web process: ``gunicorn controlplane.wsgi -c python:controlplane.webserver``.

Only what differs from gunicorn's defaults for our workload; binding, workers and timeouts stay on the
command line of each way of running it (the chart, compose, the image, ``make run``).
"""

import gc


def post_worker_init(worker) -> None:
    """Load what a worker's first requests would (the URLconf imports every view), then freeze the heap.

    A Django worker holds a few hundred thousand long-lived objects (modules, models, URL patterns) that the
    cycle collector would otherwise scan in every full collection: measured on a list of 1,000 endpoints,
    a full collection every few requests took about 60 ms, and about 20 ms once that heap was frozen
    (``gc.freeze``: the collector no longer visits it; none of it is garbage).
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 -- the attribute access is the import
    gc.collect()
    gc.freeze()
