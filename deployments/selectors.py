"""Reads of clusters and of the endpoints the reconciler must look at."""

from django.db.models import F, Q

from endpoints.models import Endpoint, State

from .models import Cluster

# States a pass leaves alone once the status describes the current spec.
SETTLED = (State.RUNNING, State.PAUSED, State.SCALED_TO_ZERO, State.FAILED, State.UPDATE_FAILED)


def endpoints_unconverged() -> list[int]:
    """Ids of endpoints whose status does not describe their current spec, or whose state is not settled."""
    rows = Endpoint.objects.filter(Q(observed_generation__lt=F("generation")) | ~Q(state__in=SETTLED))
    return list(rows.values_list("pk", flat=True))


def cluster_for(*, vendor: str, region: str) -> Cluster | None:
    """The enabled cluster serving ``vendor``/``region``, if any."""
    return Cluster.objects.filter(vendor=vendor, region=region, enabled=True).first()
