"""Helpers for tests that run the reconciler against the fake API server."""

import time

from deployments.reconcile import Retry, endpoint_reconcile
from endpoints import services
from endpoints.models import Endpoint
from tests.factories import endpoint_spec

NS = "ie-alice"


def create(user, name="web", **overrides) -> Endpoint:
    return services.endpoint_create(account=user.personal_account, spec=endpoint_spec(name, **overrides), actor=user)


def converge(endpoint_id: int, until, timeout: float = 15.0) -> Endpoint:
    """Reconcile (as the worker would, retrying transient failures) until a pass finishes with the state in ``until``.

    A pass that ends in ``Retry`` never counts: some states (paused, scaledToZero) are written by the request
    itself, so seeing one proves nothing about what reached the cluster until a whole pass has run.
    """
    until = {until} if isinstance(until, str) else set(until)
    deadline = time.monotonic() + timeout
    while True:
        try:
            endpoint_reconcile(endpoint_id=endpoint_id)
            finished = True
        except Retry:
            finished = False
        endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
        if finished and (endpoint is None and "gone" in until or endpoint is not None and endpoint.state in until):
            return endpoint
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {endpoint_id} stuck in {endpoint and endpoint.state}: "
                                 f"{endpoint and endpoint.message}")
        time.sleep(0.1)


def deployment(kube, name="ep-web"):
    return kube.get_object("deployments", NS, name)
