"""Canary rollouts: an update that runs its new spec beside the serving one and moves traffic to it step by
step, each step judged by gates on what the gateway measured, then promoted or rolled back.

Who writes what (the row is ``models.Rollout``, one per endpoint, its latest canary):

- ``endpoints.services.endpoint_update`` starts one (``rollout: {"strategy": "canary", ...}``): phase
  ``starting``, the endpoint holding quota for both versions.
- The reconciler (``deployments.rollout``) runs both versions and drives the phases through
  ``rollout_step_begin`` (the canary is ready, or a step passed: the next weight), ``rollout_readings``
  (a step's gates could not judge yet), ``rollout_promote_begin`` (the last step passed) and
  ``rollout_finish`` (promoted: the stable runs the new spec; or rolled back: a gate failed, the canary's
  pods failed). Its writes are compare-and-set on the phase and step it read, so a promote or an abort by
  hand that committed meanwhile wins.
- ``rollout_promote`` and ``rollout_abort``: by hand (``POST .../rollout/promote`` | ``abort``).

Every change of the weight publishes the endpoint's route after commit (``endpoint_changed``), which the
gateway splits by; every step is an endpoint event ``rollout`` and a ``rollout.step`` webhook.

Gates (``gate_readings``) compare the canary with the stable over the step's window, read from the
gateway's cumulative traffic counts (``endpoints.traffic.traffic_totals``) at the step's start and at
judging time: version ``""`` counts the whole endpoint and the canary's version its share again, so the
stable's window is the whole's minus the canary's. A gate fails when the canary is beyond its limit *and*
worse than the stable over the same window (trouble both versions share is not the canary's doing).
Fewer canary answers than ``minRequests`` judge nothing: the step waits for more.
"""

import copy
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from controlplane import traffic as layout
from controlplane.encryption import decrypt_json
from controlplane.errorcodes import Code
from controlplane.errors import Conflict
from controlplane.models import Account
from controlplane.webhooks import events as webhook_events

from .models import Endpoint, EndpointRevision, RevisionOutcome, Rollout, RolloutPhase, rollout_of
from .services import _assign, _changed_on_commit, _locked_endpoint, _validate, event_record
from .traffic import traffic_totals


# ---------------------------------------------------------------- reading what the gateway measured
def traffic_snapshot(endpoint_id: int, version: str) -> dict:
    """The cumulative counts now: ``{"whole": {...}, "canary": {...}}``, each ``{"by_class": {...}, "buckets":
    [...]}``. Raises ``redis.RedisError`` when Redis cannot be read (a gate never judges on no evidence)."""
    whole, canary = traffic_totals(endpoint_id), traffic_totals(endpoint_id, version=version)
    return {side: {"by_class": totals["by_class"], "buckets": totals["buckets"]}
            for side, totals in (("whole", whole), ("canary", canary))}


def _minus(a: dict, b: dict) -> dict:
    """Counts ``a`` - ``b`` (never below zero: totals that expired and started over count from zero)."""
    return {"by_class": {k: max(a["by_class"].get(k, 0) - b["by_class"].get(k, 0), 0) for k in layout.CLASSES},
            "buckets": [max(x - y, 0) for x, y in zip(a["buckets"], b["buckets"], strict=True)]}


def _empty() -> dict:
    return {"by_class": dict.fromkeys(layout.CLASSES, 0), "buckets": [0] * layout.BUCKETS}


def _reading(counts: dict) -> dict:
    by_class = counts["by_class"]
    answered = sum(by_class.values()) - by_class.get("closed", 0)  # a caller that hung up saw no answer
    errors = by_class.get("5xx", 0)
    p95 = layout.quantile(counts["buckets"], 0.95)
    return {"requests": answered, "errors": errors, "errorRate": round(errors / answered, 6) if answered else None,
            "p95LatencyMs": round(p95 * 1000, 3) if p95 is not None else None}


def gate_readings(*, baseline: dict, now: dict, gates: dict, window_seconds: float) -> dict:
    """Judge a step from two ``traffic_snapshot``s (its start and now) against ``gates``::

        {"canary": reading, "stable": reading, "windowSeconds": s, "verdict": "pass" | "fail" | "waiting",
         "failed": [gate names], "detail": {gate: sentence}}

    a reading being ``{"requests", "errors", "errorRate", "p95LatencyMs"}`` (rates and latencies None
    without answers). See the module docstring for the rules."""
    canary = _minus(now["canary"], baseline.get("canary") or _empty())
    stable = _minus(_minus(now["whole"], baseline.get("whole") or _empty()), canary)
    c, s = _reading(canary), _reading(stable)
    found = {"canary": c, "stable": s, "windowSeconds": round(window_seconds, 3), "failed": [], "detail": {}}
    if c["requests"] < gates["minRequests"]:
        return {**found, "verdict": "waiting"}

    def worse(mine, theirs) -> bool:
        return theirs is None or mine > theirs

    if c["errorRate"] > gates["maxErrorRate"] and worse(c["errorRate"], s["errorRate"]):
        found["failed"].append("maxErrorRate")
        found["detail"]["maxErrorRate"] = (
            f"the canary answered {c['errorRate']:.1%} 5xx ({c['errors']} of {c['requests']}), above "
            f"{gates['maxErrorRate']:.1%}" + (f"; the stable {s['errorRate']:.1%} of {s['requests']}"
                                               if s["errorRate"] is not None else "; the stable answered nothing"))
    if c["p95LatencyMs"] is not None and c["p95LatencyMs"] > gates["maxP95LatencyMs"] \
            and worse(c["p95LatencyMs"], s["p95LatencyMs"]):
        found["failed"].append("maxP95LatencyMs")
        found["detail"]["maxP95LatencyMs"] = (
            f"the canary's p95 latency was {c['p95LatencyMs']:.0f} ms, above {gates['maxP95LatencyMs']:g} ms"
            + (f"; the stable's {s['p95LatencyMs']:.0f} ms" if s["p95LatencyMs"] is not None else ""))
    return {**found, "verdict": "fail" if found["failed"] else "pass"}


# ---------------------------------------------------------------- the stable's spec, for the reconciler
def stable_endpoint(endpoint: Endpoint, rollout: Rollout) -> Endpoint:
    """An in-memory copy of ``endpoint`` carrying the stable revision's spec, model commit and secrets (kept
    on the rollout), for rendering the stable beside the canary. Never saved."""
    revision = EndpointRevision.objects.get(endpoint=endpoint, generation=rollout.stable_generation)
    bundle = decrypt_json(rollout.stable_secrets_encrypted, default={}) or {}
    secrets = bundle.get("secrets") or {}
    spec = _validate({**revision.spec, "model": {**revision.spec["model"], "secrets": secrets}})
    stable = copy.copy(endpoint)
    _assign(stable, spec, endpoint.instance, secrets, bundle.get("registryPassword"))
    stable.pinned_revision = revision.pinned_revision or None
    stable.spec_generation = revision.generation
    return stable


# ---------------------------------------------------------------- writers (the reconciler's)
def _step_event(endpoint: Endpoint, rollout: Rollout, state: str, message: str, *, actor=None) -> None:
    """The endpoint event and the ``rollout.step`` webhook of one step reaching ``state``."""
    event_record(endpoint=endpoint, kind="rollout", actor=actor, message=message,
                 diff={"rollout.phase": [None, rollout.phase], "rollout.weight": [None, rollout.weight]})
    webhook_events.rollout_step_emit(account=endpoint.account, endpoint=endpoint.name, step=rollout.step + 1,
                                     total_steps=len(rollout.steps), state=state, message=message,
                                     weights={"stable": 100 - rollout.weight, "canary": rollout.weight})


def _claim(rollout: Rollout, **changes) -> bool:
    """Write ``changes`` if the row is still at the phase and step ``rollout`` was read at."""
    done = Rollout.objects.filter(pk=rollout.pk, generation=rollout.generation, phase=rollout.phase,
                                  step=rollout.step).update(**changes)
    if done:
        for name, value in changes.items():
            setattr(rollout, name, value)
    return bool(done)


@transaction.atomic
def rollout_step_begin(*, endpoint: Endpoint, rollout: Rollout, step: int, baseline: dict,
                       readings: dict | None = None, now: datetime | None = None) -> bool:
    """Put step ``step`` (0-based) in force: its weight, its window starting at ``baseline``
    (``traffic_snapshot``), after ``readings`` judged the previous one. False when the row moved on."""
    now = now or timezone.now()
    spec = rollout.steps[step]
    verb = "passed its gates" if readings else "is ready"
    message = (f"Canary step {step + 1} of {len(rollout.steps)}: {spec['weight']}% of requests for "
               f"{spec['pauseSeconds']} s, then the gates (the canary {verb})")
    if not _claim(rollout, phase=RolloutPhase.PROGRESSING, step=step, weight=spec["weight"], step_started_at=now,
                  baseline=baseline, readings=readings or {}, message=message):
        return False
    _step_event(endpoint, rollout, "started", message)
    _changed_on_commit(endpoint, reconcile=False)  # the gateway takes the new weight from the route
    return True


def rollout_readings(*, rollout: Rollout, readings: dict, message: str) -> bool:
    """Record a step's gate readings that could not judge yet (too few canary answers)."""
    return _claim(rollout, readings=readings, message=message)


@transaction.atomic
def rollout_promote_begin(*, endpoint: Endpoint, rollout: Rollout, readings: dict | None,
                          actor: AbstractBaseUser | None = None, reason: str = "") -> bool:
    """Every step passed (or promoted by hand): the stable now rolls to the new spec, the weight held."""
    by = f" by {actor.get_username()}" if actor is not None else ""
    message = (f"Canary promoted{by}" + (f" ({reason})" if reason else "") if actor is not None
               else f"Canary passed all {len(rollout.steps)} steps") + ": the stable version rolls to it"
    changes = {"phase": RolloutPhase.PROMOTING, "message": message}
    if readings is not None:
        changes["readings"] = readings
    if not _claim(rollout, **changes):
        return False
    _step_event(endpoint, rollout, "promoting", message, actor=actor)
    _changed_on_commit(endpoint, reconcile=actor is not None)
    return True


@transaction.atomic
def rollout_finish(*, endpoint: Endpoint, rollout: Rollout, promoted: bool, message: str,
                   readings: dict | None = None, actor: AbstractBaseUser | None = None) -> bool:
    """End the rollout: the canary gets no more traffic (weight 0, published), and the endpoint holds the
    quota of what runs from now on: the new spec once promoted; after a rollback the larger of the two
    (the row's spec is still the canary's until a new update or a rollback replaces it). A rolled-back
    canary's revision is ``rolledBack``. False when the row moved on."""
    now = timezone.now()
    changes = {"phase": RolloutPhase.PROMOTED if promoted else RolloutPhase.ROLLED_BACK, "weight": 0,
               "message": message, "finished_at": now}
    if promoted:
        changes["stable_secrets_encrypted"] = ""  # the stable runs the new spec: its old values are not needed
    if readings is not None:
        changes["readings"] = readings
    if not _claim(rollout, **changes):
        return False
    held = rollout.canary_held if promoted else max(rollout.canary_held, rollout.stable_held)
    Endpoint.objects.filter(pk=endpoint.pk, spec_generation=rollout.generation).update(held_replica=held)
    if not promoted:
        EndpointRevision.objects.filter(endpoint=endpoint, generation=rollout.generation).exclude(
            outcome=RevisionOutcome.SERVING).update(outcome=RevisionOutcome.ROLLED_BACK)
    _step_event(endpoint, rollout, "promoted" if promoted else "rolledBack", message, actor=actor)
    _changed_on_commit(endpoint)
    return True


# ---------------------------------------------------------------- by hand
def _active_rollout(endpoint: Endpoint) -> Rollout:
    rollout = rollout_of(endpoint)
    if rollout is None or not rollout.active or rollout.generation != endpoint.spec_generation:
        raise Conflict(f"{endpoint.name} has no canary rollout under way", code=Code.NO_ROLLOUT)
    return rollout


@transaction.atomic
def rollout_promote(*, account: Account, name: str, actor: AbstractBaseUser | None, reason: str = "") -> Endpoint:
    """Skip the remaining steps and gates: the stable rolls to the canary's spec now. Raises EndpointNotFound,
    Conflict ``no_rollout``. Promoting a rollout that is promoting already changes nothing."""
    endpoint = _locked_endpoint(account, name)
    rollout = _active_rollout(endpoint)
    if rollout.phase != RolloutPhase.PROMOTING:
        rollout_promote_begin(endpoint=endpoint, rollout=rollout, readings=None, actor=actor, reason=reason)
    return endpoint


@transaction.atomic
def rollout_abort(*, account: Account, name: str, actor: AbstractBaseUser | None, reason: str = "") -> Endpoint:
    """Roll the canary back now: no more traffic to it, its objects removed, the stable serving alone; the
    endpoint reports ``updateFailed`` (its desired spec did not go out) until the next update or rollback.
    Raises EndpointNotFound, Conflict ``no_rollout``."""
    endpoint = _locked_endpoint(account, name)
    rollout = _active_rollout(endpoint)
    by = actor.get_username() if actor is not None and actor.is_authenticated else "system"
    message = f"Canary rolled back: aborted by {by}" + (f" ({reason})" if reason else "")
    rollout_finish(endpoint=endpoint, rollout=rollout, promoted=False, message=message, actor=actor)
    return endpoint  # the reconcile queued on commit reports updateFailed with this message
