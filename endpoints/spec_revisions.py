"""Spec revisions: the history of every spec generation of an endpoint that reached a cluster, their outcome,
and what a rollback to one of them restores. (Not ``deployments.revisions``: that pins the *model* revision
to a Hub commit; a spec revision records the commit it ran as ``pinned_revision``.)

Writers:
- ``revision_record``: the reconciler, when it first applies a spec generation (before writing its objects).
- ``revision_outcomes``: the status recorder (``deployments.status``), inside its transaction, when a pass
  observes the spec running (-> serving; the one serving before -> superseded, or rolledBack when the
  new spec is a rollback away from it) or failing (an applied revision -> failed).
- ``endpoints.services.endpoint_rollback`` reads ``rollback_target`` and ``secrets_restorable``; it writes
  the Endpoint only (the reconciler records the new revision with its ``rollback_of`` / ``rolled_back_from``).

Secrets. A revision keeps no secret value and no ciphertext of one: the values live encrypted on the
Endpoint row only, so rotating or removing a secret really retires the old value and the encryption keys
protect one column. A revision keeps the keys and keyed digests (HMAC under ``SECRETS_ENCRYPTION_KEY``,
salted per endpoint and key, so they reveal nothing and cannot be matched across endpoints). A rollback
restores a value when the endpoint still stores the value that revision used (same digest) and refuses,
naming the keys, when it does not: it never resurrects a secret the user replaced or removed. Rotating
``SECRETS_ENCRYPTION_KEY`` changes the digests: rollbacks to revisions recorded before then are refused
for their secrets the same way (safe: never a wrong value), until the values are given again.
"""

import hashlib
import hmac
import json

from django.conf import settings
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from controlplane.errorcodes import Code
from controlplane.errors import Conflict

from .errors import RevisionNotFound
from .models import Endpoint, EndpointEvent, EndpointRevision, RevisionOutcome
from .spec import stored_spec

# The events that change the spec itself; the one at a spec generation says who changed it and when.
SPEC_EVENTS = ("create", "update", "rollback")
REGISTRY_PASSWORD = "model.image.credentials.password"  # how the registry password is named to users


def _digest(endpoint_id: int, key: str, value: str) -> str:
    message = json.dumps([endpoint_id, key, value]).encode()
    return hmac.new(settings.SECRETS_ENCRYPTION_KEY.encode(), message, hashlib.sha256).hexdigest()[:32]


def secret_fingerprints(endpoint_id: int, secrets: dict, registry_password: str | None) -> dict:
    """``{key: digest}`` of each secret value, plus the registry password's under ``REGISTRY_PASSWORD``."""
    found = {key: _digest(endpoint_id, key, value) for key, value in secrets.items()}
    if registry_password:
        found[REGISTRY_PASSWORD] = _digest(endpoint_id, REGISTRY_PASSWORD, registry_password)
    return found


def secrets_version(fingerprints: dict) -> str:
    """One digest of all the values (what changes when any secret value changes); '' without secrets."""
    if not fingerprints:
        return ""
    return hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()[:16]


def revision_record(*, endpoint: Endpoint, image: str, secrets: dict,
                    registry_password: str | None) -> EndpointRevision | None:
    """Record the endpoint's spec generation (``spec_generation``) as applied, once: the in-memory endpoint is
    the spec the pass renders (pinned already), ``image`` the container image it rendered, ``secrets`` and
    ``registry_password`` its decrypted values (only digested). Idempotent; returns the row, or None when
    there was nothing to record.

    A spec that reached running is recorded (``serving_generation``): a converged pass costs no query."""
    if endpoint.serving_generation == endpoint.spec_generation:
        return None
    existing = EndpointRevision.objects.filter(endpoint=endpoint, generation=endpoint.spec_generation).first()
    if existing is not None:
        return existing
    change = (EndpointEvent.objects.filter(endpoint=endpoint, generation=endpoint.spec_generation,
                                           kind__in=SPEC_EVENTS).order_by("-id").first())
    fingerprints = secret_fingerprints(endpoint.pk, secrets, registry_password)
    revision, _created = EndpointRevision.objects.get_or_create(
        endpoint=endpoint, generation=endpoint.spec_generation,
        defaults={"spec": stored_spec(endpoint), "secret_keys": sorted(secrets),
                  "secrets_version": secrets_version(fingerprints), "secret_fingerprints": fingerprints,
                  "pinned_revision": endpoint.pinned_revision or "", "image": image[:512],
                  "changed_by": change.actor if change else None,
                  "changed_by_name": change.actor_name if change else "system",
                  # a pre-existing endpoint's first record has no event at its generation: its last write
                  "changed_at": change.created_at if change else endpoint.updated_at,
                  "rollback_of": endpoint.rollback_of, "rolled_back_from": endpoint.rolled_back_from})
    return revision


def revision_outcomes(*, endpoint: Endpoint, state: str, new_generation: bool, serving_generation: int | None,
                      now=None) -> bool:
    """Update revision outcomes for a status about to be written for ``endpoint`` (the spec rendered) in
    ``state``. Called inside the status recorder's transaction, which holds the endpoint row.

    - running, and the spec is not the serving one yet (``serving_generation``: the row's, as locked): its
      revision -> serving (``served_at`` set the first time), every older serving or applied revision ->
      superseded, except the one a rollback replaced -> rolledBack. True when the spec's revision exists
      (the caller then sets ``serving_generation``).
    - failed or updateFailed, first seen for this generation (``new_generation``) or newly entered: an
      applied (never served) revision -> failed. A revision that served keeps its outcome: the endpoint
      failing later is not its rollout failing.
    """
    generation = endpoint.spec_generation
    revisions = EndpointRevision.objects.filter(endpoint=endpoint)
    if state == "running":
        if serving_generation == generation:
            return False
        now = now or timezone.now()
        older = revisions.filter(generation__lt=generation,
                                 outcome__in=(RevisionOutcome.SERVING, RevisionOutcome.APPLIED))
        older.update(outcome=Case(When(generation=endpoint.rolled_back_from or 0,
                                       then=Value(RevisionOutcome.ROLLED_BACK)),
                                  default=Value(RevisionOutcome.SUPERSEDED)))
        # after the older one stopped being serving: at most one serving revision (a constraint)
        return bool(revisions.filter(generation=generation).update(
            outcome=RevisionOutcome.SERVING, served_at=Coalesce(F("served_at"), Value(now))))
    if state in ("failed", "updateFailed") and new_generation:
        revisions.filter(generation=generation, outcome=RevisionOutcome.APPLIED).update(
            outcome=RevisionOutcome.FAILED)
    return False


def revision_get(*, endpoint: Endpoint, generation: int) -> EndpointRevision:
    revision = EndpointRevision.objects.filter(endpoint=endpoint, generation=generation).first()
    if revision is None:
        raise RevisionNotFound(f"{endpoint.name} has no revision {generation}",
                               fields={"revision": [f"no revision {generation}"]})
    return revision


def rollback_target(*, endpoint: Endpoint, generation: int | None) -> EndpointRevision:
    """The revision a rollback restores: ``generation``, or by default the newest revision that served
    before the spec now desired (``spec_generation``).

    Raises RevisionNotFound (404) for an unknown number; Conflict (409): ``revision_not_served`` when the
    revision never reached running, ``no_previous_revision`` when no earlier revision served."""
    if generation is not None:
        revision = revision_get(endpoint=endpoint, generation=generation)
        if revision.served_at is None:
            raise Conflict(f"Revision {generation} never served ({revision.outcome}); only a revision that "
                           "reached running can be rolled back to", code=Code.REVISION_NOT_SERVED,
                           fields={"revision": [f"revision {generation} never served"]})
        return revision
    revision = (EndpointRevision.objects.filter(endpoint=endpoint, generation__lt=endpoint.spec_generation,
                                                served_at__isnull=False).order_by("-generation").first())
    if revision is None:
        raise Conflict(f"No revision served before revision {endpoint.spec_generation}: nothing to roll back to",
                       code=Code.NO_PREVIOUS_REVISION)
    return revision


def secrets_restorable(*, endpoint: Endpoint, revision: EndpointRevision, secrets: dict,
                       registry_password: str | None) -> tuple[dict, str | None]:
    """The secret values and registry password ``revision`` used, taken from the ones the endpoint stores now
    (``secrets``, ``registry_password``: decrypted) where their digests match.

    Raises Conflict (409, ``rollback_secrets_missing``) naming every key whose value the endpoint no longer
    stores; setting those values again (an update) makes the rollback possible."""
    current = secret_fingerprints(endpoint.pk, secrets, registry_password)
    wanted = revision.secret_fingerprints or {}
    missing = sorted(key for key, digest in wanted.items() if current.get(key) != digest)
    if missing:
        names = ", ".join(missing)
        raise Conflict(f"Revision {revision.generation} used secret values the endpoint no longer stores: {names}. "
                       "Values are kept only on the endpoint, never in its history: set them again with an "
                       "update, then roll back", code=Code.ROLLBACK_SECRETS_MISSING,
                       fields={key if key == REGISTRY_PASSWORD else f"model.secrets.{key}":
                               ["value no longer stored"] for key in missing})
    restored = {key: secrets[key] for key in wanted if key != REGISTRY_PASSWORD}
    return restored, registry_password if REGISTRY_PASSWORD in wanted else None

