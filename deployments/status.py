"""Status recording: what a reconcile pass writes on the endpoint row, and the events of state changes.

Every write is conditional on the generation the pass rendered, so a pass that read an older spec never
overwrites the status of a newer one; the gateway is told of each change after commit.
"""

from django.db import transaction
from django.utils import timezone

from endpoints.models import Endpoint, ReplicaChange
from endpoints.services import event_record

from .feed import route_publish_on_commit
from .observe import Observation

MESSAGE_MAX = 1024


def status_note(endpoint: Endpoint, generation: int, message: str) -> None:
    """Replace only the message (the state stays the last one observed)."""
    Endpoint.objects.filter(pk=endpoint.pk, generation=generation).exclude(message=message[:MESSAGE_MAX]).update(
        message=message[:MESSAGE_MAX])


def status_record(endpoint: Endpoint, generation: int, observation: Observation, *, url: str | None,
                  extra: dict | None = None) -> bool:
    """Write the observed status (and the ``extra`` fields, e.g. ``private_service_name``) if any changed
    and the spec is still the one rendered; an event when the state changed, a ``ReplicaChange`` when the
    replica counts did. True if written."""
    fields = {"state": observation.state, "message": observation.message[:MESSAGE_MAX], "url": url,
              "ready_replica": observation.ready, "target_replica": observation.target,
              "observed_generation": generation, "pinned_revision": endpoint.pinned_revision, **(extra or {})}
    if all(getattr(endpoint, name) == value for name, value in fields.items()):
        return False
    with transaction.atomic():
        current = Endpoint.objects.select_for_update().filter(pk=endpoint.pk, generation=generation).first()
        if current is None:  # the spec moved on; the newer generation's reconcile will report
            return False
        Endpoint.objects.filter(pk=endpoint.pk).update(**fields, last_reconciled_at=timezone.now())
        route_publish_on_commit(endpoint)  # the gateway releases held requests when this says running
        if (current.ready_replica, current.target_replica) != (observation.ready, observation.target):
            ReplicaChange.objects.create(endpoint=endpoint, ready=observation.ready, target=observation.target)
        if current.state != observation.state:
            event_record(endpoint=endpoint, kind="state", actor=None, message=observation.message,
                         from_state=current.state, to_state=observation.state)
    return True
