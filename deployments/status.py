"""Status recording: what a reconcile pass writes on the endpoint row, and the events of state changes.

Every write is conditional on the generation the pass rendered, so a pass that read an older spec never
overwrites the status of a newer one; the gateway is told of each change after commit. The outcome of the
spec revision rendered is updated in the same transaction (``endpoints.spec_revisions.revision_outcomes``).
"""

from django.db import transaction
from django.utils import timezone

from endpoints.models import Endpoint, ReplicaChange, State
from endpoints.services import event_record
from endpoints.spec_revisions import revision_outcomes

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
    replica counts did. True if written.

    Running with a spec that is not the serving one makes its revision serving (and ``serving_generation``
    its number) once that revision is recorded."""
    fields = {"state": observation.state, "message": observation.message[:MESSAGE_MAX], "url": url,
              "ready_replica": observation.ready, "target_replica": observation.target,
              "observed_generation": generation, "pinned_revision": endpoint.pinned_revision, **(extra or {})}
    becomes_serving = observation.state == State.RUNNING and endpoint.serving_generation != endpoint.spec_generation
    if not becomes_serving and all(getattr(endpoint, name) == value for name, value in fields.items()):
        return False
    with transaction.atomic():
        current = Endpoint.objects.select_for_update().filter(pk=endpoint.pk, generation=generation).first()
        if current is None:  # the spec moved on; the newer generation's reconcile will report
            return False
        now = timezone.now()
        new_generation = current.observed_generation != generation or current.state != observation.state
        if revision_outcomes(endpoint=endpoint, state=observation.state, new_generation=new_generation,
                             serving_generation=current.serving_generation, now=now):
            fields["serving_generation"] = endpoint.spec_generation
        elif becomes_serving and all(getattr(endpoint, name) == value for name, value in fields.items()):
            return False  # entered for a revision no pass recorded (none applied it): nothing else to write
        Endpoint.objects.filter(pk=endpoint.pk).update(**fields, last_reconciled_at=now)
        route_publish_on_commit(endpoint)  # the gateway releases held requests when this says running
        if (current.ready_replica, current.target_replica) != (observation.ready, observation.target):
            ReplicaChange.objects.create(endpoint=endpoint, ready=observation.ready, target=observation.target)
        if current.state != observation.state:
            event_record(endpoint=endpoint, kind="state", actor=None, message=observation.message,
                         from_state=current.state, to_state=observation.state)
    return True
