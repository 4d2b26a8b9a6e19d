"""A canary rollout's reconcile pass: run the stable and the canary side by side and move the rollout along.

Called by ``reconcile._converge`` for an endpoint whose spec came with a canary (``endpoints.rollouts``),
while it runs and after it rolled back. What it renders:

- ``starting``, ``progressing``: the stable revision's spec (``stable_endpoint``) under the endpoint's usual
  names, and the endpoint's own spec as the canary (``render.CANARY``: its own Deployment and HPA, so both
  autoscale; its own Service, which the gateway sends the canary's share to);
- ``promoting``: the endpoint's spec under the usual names (the stable Deployment rolls to it) with the
  canary still beside it, until the stable runs it; then the rollout is promoted (weight 0) and the next
  pass, an ordinary one, prunes the canary's objects;
- ``rolledBack``: the stable revision's spec alone (the canary's objects are pruned), reported as
  ``updateFailed`` with the rollout's message, until a new update or a rollback replaces the spec.

The endpoint reports ``updating`` throughout (HF clients know no other state for this), its replica counts
the sum of both versions. Phase changes go through ``endpoints.rollouts``' writers, which are
compare-and-set: a promote or abort by hand that committed meanwhile wins, and this pass's decision is
dropped (the next pass sees the new phase).
"""

import dataclasses
import logging

from django.conf import settings
from django.utils import timezone

from endpoints.models import Endpoint, Rollout, RolloutPhase, State, rollout_of
from endpoints.rollouts import (
    gate_readings,
    rollout_finish,
    rollout_promote_begin,
    rollout_readings,
    rollout_step_begin,
    stable_endpoint,
    traffic_snapshot,
)

from .apply import apply_all
from .kube import Kube
from .models import Cluster
from .names import owned_selector
from .observe import Observation, live_deployment, observe_live, service_serving
from .render import EndpointTarget, pod_id, render_endpoint
from .targets import platform, target_for

log = logging.getLogger(__name__)

FAILING = (State.FAILED, State.UPDATE_FAILED)
WAITING_RECHECK_SECONDS = 2.0  # a step waiting for canary answers looks again this often
SETTLE_SECONDS = 0.5  # after a phase change: the next pass renders what the new phase wants
# A canary whose pods are ready waits for its Service's EndpointSlices, which are not watched: they follow
# the pods within a controller pass, so the first looks come soon (one list each), then back off to the
# usual requeue should they never come (a Service selecting nothing).
UNROUTED = "its Service has no ready endpoint yet"
UNROUTED_RECHECK_SECONDS = 0.25


@dataclasses.dataclass(frozen=True)
class RolloutPass:
    observation: Observation
    writes: int
    requeue_after: float | None


def rollout_current(endpoint: Endpoint) -> Rollout | None:
    """The rollout this pass must follow: the canary of the spec now desired, unless it was promoted (then
    the endpoint's spec is simply the one to run)."""
    rollout = rollout_of(endpoint)
    if rollout is None or rollout.generation != endpoint.spec_generation or rollout.phase == RolloutPhase.PROMOTED:
        return None
    return rollout


def _observed(kube: Kube, objects: list[dict], result, target: EndpointTarget) -> Observation:
    """One version as the apply left it: its Deployment (rendered among ``objects``) and its pods."""
    spec = next(o for o in objects if o["kind"] == "Deployment")
    deployment = live_deployment(kube, target.namespace, spec, result.live.get(("Deployment", spec["metadata"]["name"])))
    return observe_live(kube, target.namespace, spec, deployment,
                        owned_selector(settings.INSTALLATION_ID, target.cluster_id, pod_id(target)))


def rollout_converge(kube: Kube, endpoint: Endpoint, cluster: Cluster, rollout: Rollout, target: EndpointTarget,
                     *, live: dict, kinds: tuple[str, ...], record_revision) -> RolloutPass:
    """Apply both versions (or the stable alone once rolled back) against ``live`` (kind -> name -> object,
    pruning ``kinds``), observe them, and take the rollout's next step. ``target`` is the endpoint's own
    spec rendered for ``cluster`` (``targets.target_for``); ``record_revision(desired)`` records the canary's
    spec revision before its objects are written. Raises KubeError, AwsError, and ``redis.RedisError`` when
    the traffic counts a gate needs cannot be read (the caller retries)."""
    if rollout.phase == RolloutPhase.PROMOTING:
        stable_target = target
    else:
        stable_target = target_for(stable_endpoint(endpoint, rollout), cluster, refresh_registry=True)
    stable = render_endpoint(stable_target, platform())
    canary_target = dataclasses.replace(target, canary=True)
    canary = render_endpoint(canary_target, platform()) if rollout.active else []
    if canary:
        record_revision(canary)
    result = apply_all(kube, stable + canary, live, kinds)
    seen = _observed(kube, stable, result, stable_target)
    if not rollout.active:  # rolled back: the stable serves alone
        if seen.state == State.RUNNING:
            seen = Observation(State.UPDATE_FAILED, rollout.message or "Canary rolled back", seen.ready, seen.target)
        return RolloutPass(seen, result.writes, None)
    seen_canary = _observed(kube, canary, result, canary_target)
    if rollout.phase == RolloutPhase.STARTING and seen_canary.state == State.RUNNING:
        seen_canary = _reachable(kube, canary, canary_target, seen_canary)
    message, requeue = _advance(endpoint, rollout, seen, seen_canary)
    both = Observation(State.UPDATING, message, seen.ready + seen_canary.ready, seen.target + seen_canary.target)
    return RolloutPass(both, result.writes, requeue)


def _reachable(kube: Kube, canary: list[dict], target: EndpointTarget, seen: Observation) -> Observation:
    """The running canary as its callers would find it: still starting until its Service has a ready
    endpoint, so the first step's weight sends no caller to a Service with nowhere to route."""
    service = next(o for o in canary if o["kind"] == "Service")["metadata"]["name"]
    if service_serving(kube, target.namespace, service):
        return seen
    return Observation(State.INITIALIZING, UNROUTED, seen.ready, seen.target)


def _advance(endpoint: Endpoint, rollout: Rollout, stable: Observation, canary: Observation) -> tuple[str, float]:
    """Take the rollout's next step if one is due; (the status message, seconds until the next look)."""
    now = timezone.now()
    if rollout.phase == RolloutPhase.PROMOTING:
        if stable.state == State.RUNNING:
            rollout_finish(endpoint=endpoint, rollout=rollout, promoted=True,
                           message=f"Canary promoted: revision {rollout.generation} serves all traffic")
            return rollout.message, SETTLE_SECONDS
        return rollout.message or "Canary promoted: the stable version rolls to it", _requeue()
    if canary.state in FAILING:
        rollout_finish(endpoint=endpoint, rollout=rollout, promoted=False,
                       message=f"Canary rolled back: its pods failed ({canary.message})")
        return rollout.message, SETTLE_SECONDS
    if rollout.phase == RolloutPhase.STARTING:
        if canary.message == UNROUTED:
            waited = (now - rollout.started_at).total_seconds()
            return (f"Canary starting beside the serving version ({canary.ready}/{canary.target} ready; {UNROUTED})",
                    min(max(waited / 10, UNROUTED_RECHECK_SECONDS), _requeue()))
        if canary.state != State.RUNNING:
            return f"Canary starting beside the serving version ({canary.ready}/{canary.target} ready)", _requeue()
        rollout_step_begin(endpoint=endpoint, rollout=rollout, step=0,
                           baseline=traffic_snapshot(endpoint.pk, rollout.version), now=now)
        return rollout.message, max(_pause_left(rollout, now), SETTLE_SECONDS)
    left = _pause_left(rollout, now)
    if left > 0:
        return rollout.message, max(left, SETTLE_SECONDS / 5)
    snapshot = traffic_snapshot(endpoint.pk, rollout.version)
    elapsed = (now - rollout.step_started_at).total_seconds()
    readings = gate_readings(baseline=rollout.baseline, now=snapshot, gates=rollout.gates, window_seconds=elapsed)
    step = f"step {rollout.step + 1} of {len(rollout.steps)}"
    if readings["verdict"] == "waiting":
        got, need = readings["canary"]["requests"], rollout.gates["minRequests"]
        rollout_readings(rollout=rollout, readings=readings,
                         message=f"Canary {step} at {rollout.weight}%: the gates wait for {need - got} more canary "
                                 f"answers ({got} of {need})")
        return rollout.message, WAITING_RECHECK_SECONDS
    if readings["verdict"] == "fail":
        failed = "; ".join(f"gate {gate} failed: {readings['detail'][gate]}" for gate in readings["failed"])
        rollout_finish(endpoint=endpoint, rollout=rollout, promoted=False, readings=readings,
                       message=f"Canary rolled back at {step} ({rollout.weight}%): {failed}")
        log.info("rollout.rolled_back endpoint=%s generation=%s gates=%s", endpoint.pk, rollout.generation,
                 ",".join(readings["failed"]))
        return rollout.message, SETTLE_SECONDS
    if rollout.step + 1 < len(rollout.steps):
        rollout_step_begin(endpoint=endpoint, rollout=rollout, step=rollout.step + 1, baseline=snapshot,
                           readings=readings, now=now)
        return rollout.message, max(_pause_left(rollout, now), SETTLE_SECONDS)
    rollout_promote_begin(endpoint=endpoint, rollout=rollout, readings=readings)
    return rollout.message, SETTLE_SECONDS


def _pause_left(rollout: Rollout, now) -> float:
    """Seconds until the step in force is judged (0 once its pause is over)."""
    if rollout.step_started_at is None:
        return 0.0
    pause = rollout.steps[rollout.step]["pauseSeconds"]
    return max(pause - (now - rollout.step_started_at).total_seconds(), 0.0)


def _requeue() -> float:
    return float(settings.RECONCILE_REQUEUE_SECONDS)
