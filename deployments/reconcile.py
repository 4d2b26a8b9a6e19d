"""The reconcile loop: lock, load, pin, check, apply, observe, record. Level-triggered and idempotent.

Around apply, a private endpoint with ``privateService`` gets its PrivateLink endpoint service
(``privatelink``), and an endpoint that no longer wants one loses it before its NLB's Service is pruned.

``endpoint_reconcile`` converges one endpoint and is safe to run any number of times: a converged
endpoint costs reads only. It never holds a database transaction across a Kubernetes call. Every failure
goes through one classifier (``_failed``): transient -> ``Retry`` (the task retries with backoff);
permanent -> reported on the endpoint (``failed``, or ``updateFailed`` while the previous version still
serves). The renderer's input is built by ``targets``, the status written by ``status``. Each spec
generation is recorded as a spec revision (``endpoints.spec_revisions``) as its objects first reach the
cluster; a rollback arrives pinned to its revision's commit, which ``_pin_revision`` then keeps.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controlplane.names import dns_label, endpoint_object_name, namespace_name
from controlplane.selectors import account_hub_token
from endpoints.costs import costs_close
from endpoints.locks import endpoint_session_lock
from endpoints.models import Endpoint, Intent, State
from endpoints.services import endpoint_deleted_emit, endpoint_secrets
from endpoints.spec_revisions import revision_record
from quotas.selectors import quota_limits

from .apply import ApplyResult, apply_all, apply_one
from .aws import AwsError
from .feed import route_publish_on_commit
from .kube import Kube, KubeError, kube_for
from .models import Cluster
from .names import owned_selector
from .observe import Observation, live_deployment, observe_live
from .privatelink import PrivateLinkPending, privatelink_ensure, privatelink_remove
from .render import EndpointTarget, render_account, render_endpoint
from .revisions import RevisionError, revision_resolve
from .rollout import rollout_converge, rollout_current
from .selectors import cluster_for
from .status import status_note, status_record
from .targets import endpoint_url, platform, target_for, ungranted_registry

log = logging.getLogger(__name__)

ENDPOINT_KINDS = ("Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy")
RECHECK_FAILED_SECONDS = 30.0  # a failure read from pods (unschedulable, deadline) may clear on its own
RECHECK_SCALING_SECONDS = 5.0  # running with replicas still starting: keep readyReplica current
RECHECK = {State.FAILED: RECHECK_FAILED_SECONDS, State.UPDATE_FAILED: RECHECK_FAILED_SECONDS}
MOVING = (State.INITIALIZING, State.UPDATING)  # pods start or roll: look again after RECONCILE_REQUEUE_SECONDS
KEEPS_URL = (State.RUNNING, State.UPDATING, State.UPDATE_FAILED, State.SCALED_TO_ZERO)


class Retry(Exception):
    """The pass could not finish for a transient reason; run it again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class Busy(Retry):
    """Another pass holds the endpoint's lock (a pass started after it was asked for would cover this one)."""


class Refused(Exception):
    """The platform will not run this spec for this account (never transient)."""

    transient = False


@dataclass(frozen=True)
class Outcome:
    """What a pass left behind. ``requeue_after``: seconds until the next look while the cluster may still
    change the answer (controller-runtime's RequeueAfter); None once nothing more can happen unaided."""

    state: str
    writes: int = 0
    requeue_after: float | None = None


@dataclass(frozen=True)
class _Failure:
    """How one kind of error ends a pass. Messages are formatted with ``exc``."""

    note: str | None  # transient: noted on the endpoint before retrying (None: retried silently)
    failed: str  # permanent: the endpoint fails with this message
    update_failed: str | None = None  # permanent, on an update while the previous version serves (None: fails)


FAILURES: dict[type[Exception], _Failure] = {
    KubeError: _Failure("Kubernetes API problem, retrying ({exc}); last known state kept", "Rejected by Kubernetes: {exc}",
                        "Update rejected by Kubernetes, the previous version keeps serving: {exc}"),
    AwsError: _Failure("AWS problem, retrying ({exc}); last known state kept", "AWS setup failed: {exc}"),
    RevisionError: _Failure(None, "{exc}"),
    Refused: _Failure(None, "Endpoint refused: {exc}", "Update refused, the previous version keeps serving: {exc}"),
}


@dataclass(frozen=True)
class _Converged:
    observation: Observation
    writes: int
    private_service_name: str | None  # the PrivateLink endpoint service, when the endpoint has one
    link_pending: str | None = None  # why PrivateLink is not ready yet
    requeue_after: float | None = None  # a canary's next look, when it decides it (else by the state)


# ---------------------------------------------------------------- the loop
def endpoint_reconcile(*, endpoint_id: int, locked: Callable[[], object] | None = None) -> Outcome | None:
    """Converge one endpoint. Raises Busy when another worker holds it, Retry when a transient error
    interrupts; returns None if the endpoint no longer exists. ``locked``, if given, is called once the
    endpoint's lock is held, before the pass reads anything."""
    with endpoint_session_lock(endpoint_id) as held:
        if not held:
            raise Busy("another worker is reconciling this endpoint", delay=1)
        if locked is not None:
            locked()
        return _reconcile(endpoint_id)


def _reconcile(endpoint_id: int) -> Outcome | None:
    endpoint = Endpoint.objects.select_related("instance", "account", "rollout").filter(pk=endpoint_id).first()
    if endpoint is None:
        return None
    generation = endpoint.generation
    cluster = cluster_for(vendor=endpoint.instance.vendor, region=endpoint.instance.region)
    if endpoint.intent == Intent.DELETE:
        return _teardown(endpoint, cluster)
    if cluster is None:
        instance = endpoint.instance
        return _record(endpoint, generation, Observation(
            State.PENDING if endpoint.intent == Intent.RUN else endpoint.state,
            f"No cluster is registered for {instance.vendor}/{instance.region}; waiting for one", 0, 0), url=None)
    previously_applied = endpoint.first_applied_at is not None
    try:
        _pin_revision(endpoint, generation)
        _refuse_ungranted_registry(endpoint)
        _mark_first_apply(endpoint)
        converged = _converge(endpoint, cluster)
    except tuple(FAILURES) as exc:
        return _failed(endpoint, generation, exc, previously_applied=previously_applied)
    except redis.RedisError as exc:  # a canary's gate cannot judge without the gateway's counts
        raise Retry(f"the gateway's traffic counts cannot be read ({type(exc).__name__})", delay=2) from exc
    observation = converged.observation
    _record(endpoint, generation, observation,
            url=endpoint_url(cluster, endpoint) if observation.state in KEEPS_URL else None,
            extra={"private_service_name": converged.private_service_name})
    if converged.link_pending and observation.state not in (State.INITIALIZING, State.UPDATING):
        raise Retry(converged.link_pending, delay=10)  # settled states are not requeued; keep looking for the NLB
    log.info("reconcile.applied endpoint=%s generation=%s state=%s writes=%s", endpoint.pk, generation,
             observation.state, converged.writes)
    requeue = converged.requeue_after if converged.requeue_after is not None else _requeue_after(observation)
    return Outcome(observation.state, converged.writes, requeue)


def _failed(endpoint: Endpoint, generation: int, exc: Exception, *, previously_applied: bool) -> Outcome:
    """The one failure classifier (``FAILURES``): a transient error raises Retry (after noting it, the
    state kept); a permanent one fails the endpoint, or fails only the update while the objects of the
    previous version keep serving (the url kept)."""
    failure = next(f for kind, f in FAILURES.items() if isinstance(exc, kind))
    if getattr(exc, "transient", False):
        if failure.note:
            status_note(endpoint, generation, failure.note.format(exc=exc))
        raise Retry(str(exc), delay=getattr(exc, "retry_after", None)) from exc
    if failure.update_failed and previously_applied and endpoint.intent == Intent.RUN:
        return _record(endpoint, generation, Observation(
            State.UPDATE_FAILED, failure.update_failed.format(exc=exc), endpoint.ready_replica,
            endpoint.target_replica), url=endpoint.url)
    return _record(endpoint, generation, Observation(State.FAILED, failure.failed.format(exc=exc), 0, 0), url=None)


def _requeue_after(observation: Observation) -> float | None:
    if observation.state == State.RUNNING and observation.ready < observation.target:
        return RECHECK_SCALING_SECONDS
    if observation.state in MOVING:
        return float(settings.RECONCILE_REQUEUE_SECONDS)
    return RECHECK.get(observation.state)


def _record(endpoint: Endpoint, generation: int, observation: Observation, *, url: str | None,
            extra: dict | None = None) -> Outcome:
    status_record(endpoint, generation, observation, url=url, extra=extra)
    return Outcome(observation.state)


# ---------------------------------------------------------------- the steps
def _pin_revision(endpoint: Endpoint, generation: int) -> None:
    """Resolve the revision to a commit sha once per spec (raises RevisionError). Only a change of repository
    or revision clears the pin; a rollback sets it to its revision's sha, which is kept, never re-resolved."""
    if endpoint.pinned_revision:
        return
    sha = revision_resolve(repository=endpoint.repository, revision=endpoint.revision,
                           token=account_hub_token(account=endpoint.account),
                           platform_grants=endpoint.account.granted_repositories)
    Endpoint.objects.filter(pk=endpoint.pk, generation=generation).update(pinned_revision=sha)
    endpoint.pinned_revision = sha


def _refuse_ungranted_registry(endpoint: Endpoint) -> None:
    """Raise Refused when the image would pull with the platform's cloud identity from a registry no
    operator granted to the account."""
    if (server := ungranted_registry(endpoint)) is not None:
        raise Refused(f"the image pulls from {server}, which this account may not pull from with the platform's "
                      "credentials: give the image's own credentials, or ask an operator to grant the registry")


def _mark_first_apply(endpoint: Endpoint) -> None:
    """Recorded before the first write, so a delete never skips objects a failed pass left behind."""
    if endpoint.first_applied_at is None:
        now = timezone.now()
        Endpoint.objects.filter(pk=endpoint.pk, first_applied_at__isnull=True).update(first_applied_at=now)
        endpoint.first_applied_at = now


def _converge(endpoint: Endpoint, cluster: Cluster) -> _Converged:
    """Apply the account's and the endpoint's objects, observe them, and keep PrivateLink as the spec wants
    (raises KubeError, AwsError)."""
    kube = kube_for(cluster)
    target = target_for(endpoint, cluster, refresh_registry=True)
    writes = _ensure_account(kube, endpoint, target.namespace)
    rollout = rollout_current(endpoint) if endpoint.intent == Intent.RUN else None
    if rollout is not None:  # a canary beside the stable (never private: the update refuses that)
        done = rollout_converge(kube, endpoint, cluster, rollout, target, kinds=ENDPOINT_KINDS,
                                live=_live_objects(kube, cluster, target.namespace, endpoint.pk),
                                record_revision=lambda desired: _record_revision(endpoint, desired))
        return _Converged(done.observation, writes + done.writes, None, requeue_after=done.requeue_after)
    desired = render_endpoint(target, platform())
    _record_revision(endpoint, desired)
    live = _live_objects(kube, cluster, target.namespace, endpoint.pk)
    wants_link = target.access == "private" and bool(target.private_service)
    if not wants_link:
        _unlink(endpoint, cluster, target)  # before the NLB's Service is pruned
    result = apply_all(kube, desired, live, ENDPOINT_KINDS)
    observation = _observe(kube, endpoint, target, desired, result)
    writes += result.writes
    if not wants_link:
        return _Converged(observation, writes, None)
    try:
        link = privatelink_ensure(cluster=cluster, endpoint_id=endpoint.pk, namespace=target.namespace,
                                  service=endpoint_object_name(endpoint.name, "private"),
                                  account_id=endpoint.private_service["accountId"],
                                  region=endpoint.private_service.get("region") or cluster.region)
    except PrivateLinkPending as exc:
        state = State.INITIALIZING if observation.state == State.RUNNING else observation.state
        return _Converged(Observation(state, f"{exc}; the endpoint is private", observation.ready, observation.target),
                          writes, endpoint.private_service_name, link_pending=str(exc))
    return _Converged(observation, writes, link)


def _record_revision(endpoint: Endpoint, desired: list[dict]) -> None:
    """Record the spec revision about to reach the cluster (once; a spec already serving costs nothing), before
    its objects are written, so a rejected apply is a failed revision. Its image is the one rendered."""
    if endpoint.serving_generation == endpoint.spec_generation:
        return
    deployment = next(o for o in desired if o["kind"] == "Deployment")
    secrets, registry_password = endpoint_secrets(endpoint=endpoint)
    revision_record(endpoint=endpoint, image=deployment["spec"]["template"]["spec"]["containers"][0]["image"],
                    secrets=secrets, registry_password=registry_password)


def _unlink(endpoint: Endpoint, cluster: Cluster, target: EndpointTarget) -> None:
    """Delete the PrivateLink endpoint service the endpoint had, if any."""
    if endpoint.private_service_name:
        privatelink_remove(cluster=cluster, service_name=endpoint.private_service_name, namespace=target.namespace,
                           service=endpoint_object_name(endpoint.name, "private"))


def _ensure_account(kube: Kube, endpoint: Endpoint, namespace: str) -> int:
    """The account's objects (``render_account``): Namespace, ResourceQuota, its NetworkPolicies and its own
    Hub token Secret if it has one."""
    objects = render_account(namespace=namespace, account_label=dns_label(endpoint.account.slug),
                             quota=quota_limits(account=endpoint.account),
                             hub_token=account_hub_token(account=endpoint.account),
                             egress_denied=tuple(settings.TENANT_EGRESS_DENIED_CIDRS)
                             if settings.TENANT_EGRESS_POLICY else None)
    result = ApplyResult()
    for obj in objects:
        apply_one(kube, obj, kube.get(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]),
                  result)
    return result.writes


def _live_objects(kube: Kube, cluster: Cluster, namespace: str, endpoint_id: int) -> dict[str, dict[str, dict]]:
    labels = owned_selector(settings.INSTALLATION_ID, cluster.pk, endpoint_id)
    return {kind: {o["metadata"]["name"]: o for o in kube.list(kind, namespace, labels)} for kind in ENDPOINT_KINDS}


def _observe(kube: Kube, endpoint: Endpoint, target: EndpointTarget, desired: list[dict],
             result: ApplyResult) -> Observation:
    deployment_spec = next(o for o in desired if o["kind"] == "Deployment")
    deployment = live_deployment(kube, target.namespace, deployment_spec,
                                 result.live.get(("Deployment", deployment_spec["metadata"]["name"])))
    ready = (deployment or {}).get("status", {}).get("readyReplicas", 0) or 0
    if endpoint.intent == Intent.PAUSE:
        return Observation(State.PAUSED, "Endpoint paused by the user", ready, 0)
    if endpoint.intent == Intent.SCALE_TO_ZERO:
        return Observation(State.SCALED_TO_ZERO, "Endpoint scaled to zero; the next request wakes it", ready, 0)
    return observe_live(kube, target.namespace, deployment_spec, deployment,
                        owned_selector(settings.INSTALLATION_ID, target.cluster_id, endpoint.pk))


# ---------------------------------------------------------------- deletion
def _teardown(endpoint: Endpoint, cluster: Cluster | None) -> Outcome | None:
    """Delete the PrivateLink service if any, every owned object (their pods and ReplicaSets go by garbage
    collection), the account's namespace when no other endpoint of the account is left on the cluster, then
    the row (its events go with it)."""
    if cluster is not None:  # objects are looked for even if no pass finished: one may have written some
        kube = kube_for(cluster)
        namespace = namespace_name(cluster.namespace_prefix, endpoint.account.slug)
        if endpoint.private_service_name:
            try:
                privatelink_remove(cluster=cluster, service_name=endpoint.private_service_name, namespace=namespace,
                                   service=endpoint_object_name(endpoint.name, "private"))
            except AwsError as exc:
                if exc.transient:
                    status_note(endpoint, endpoint.generation, f"Deleting: AWS problem, retrying ({exc})")
                    raise Retry(str(exc)) from exc
                # A permanent refusal must not block the delete forever; the operator is told in the log.
                log.error("privatelink.orphaned endpoint=%s service=%s error=%s", endpoint.pk,
                          endpoint.private_service_name, exc)
        try:
            live = _live_objects(kube, cluster, namespace, endpoint.pk)
            for kind in reversed(ENDPOINT_KINDS):
                for name in live[kind]:
                    kube.delete(kind, namespace, name)
            others = Endpoint.objects.filter(account=endpoint.account, instance__vendor=cluster.vendor,
                                             instance__region=cluster.region).exclude(pk=endpoint.pk)
            if endpoint.first_applied_at is not None and not others.exists():
                # The account's last endpoint here: its namespace (quota, policies) goes too. An endpoint
                # created meanwhile retries until the namespace is gone, then recreates it.
                kube.delete("Namespace", None, namespace)
        except KubeError as exc:
            status_note(endpoint, endpoint.generation, f"Deleting: Kubernetes API problem, retrying ({exc})")
            raise Retry(str(exc), delay=exc.retry_after) from exc
    costs_close(endpoint=endpoint)  # its replica changes go with the row: its cost is accrued first
    with transaction.atomic():  # the row and its endpoint.deleted webhook go together, or neither
        endpoint_deleted_emit(endpoint)
        endpoint.delete()
    route_publish_on_commit(endpoint)  # autocommit here: published at once, as gone
    log.info("reconcile.deleted endpoint=%s", endpoint.pk)
    return None
