"""The reconcile loop: lock, load, pin, render, apply, observe, record. Level-triggered and idempotent.

Around apply, a private endpoint with ``privateService`` gets its PrivateLink endpoint service
(``privatelink``), and an endpoint that no longer wants one loses it before its NLB's Service is pruned.

``endpoint_reconcile`` converges one endpoint and is safe to run any number of times: a converged
endpoint costs reads only. It never holds a database transaction across a Kubernetes call. Failures
are classified: ``Retry`` (transient: the task retries with backoff) or reported on the endpoint
(permanent: ``failed`` with the server's message).
"""

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane.encryption import decrypt_json
from controlplane.selectors import account_hub_token
from endpoints.catalog import image_registry
from endpoints.locks import endpoint_lock_key
from endpoints.models import Endpoint, EndpointEvent, Intent, State
from endpoints.routes import route_publish_on_commit
from quotas.selectors import quota_limits

from .apply import ApplyResult, apply_all, apply_one
from .aws import AwsError
from .kube import Kube, KubeError, kube_for
from .models import Cluster
from .names import ANNOTATION_TEMPLATE, dns_label, endpoint_object_name, host_id, namespace_name, owned_selector
from .observe import Observation, observe
from .privatelink import PrivateLinkPending, privatelink_ensure, privatelink_remove
from .registry import ecr_registry, registry_credentials
from .render import EndpointTarget, InstanceSpec, Platform, render_account, render_endpoint
from .revisions import RevisionError, revision_resolve

log = logging.getLogger(__name__)

SETTLED = (State.RUNNING, State.PAUSED, State.SCALED_TO_ZERO, State.FAILED, State.UPDATE_FAILED)
ENDPOINT_KINDS = ("Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy")
REQUEUE_SECONDS = 2.0  # while pods start or roll
RECHECK_FAILED_SECONDS = 30.0  # a failure read from pods (unschedulable, deadline) may clear on its own
RECHECK_SCALING_SECONDS = 5.0  # running with replicas still starting: keep readyReplica current


class Retry(Exception):
    """The pass could not finish for a transient reason; run it again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True)
class Outcome:
    """What a pass left behind. ``requeue_after``: seconds until the next look while the cluster may still
    change the answer (controller-runtime's RequeueAfter); None once nothing more can happen unaided."""

    state: str
    writes: int = 0
    requeue_after: float | None = None


def endpoints_unconverged() -> list[int]:
    """Ids of endpoints whose status does not describe their current spec, or whose state is not settled."""
    rows = Endpoint.objects.filter(Q(observed_generation__lt=F("generation")) | ~Q(state__in=SETTLED))
    return list(rows.values_list("pk", flat=True))


def cluster_for(*, vendor: str, region: str) -> Cluster | None:
    return Cluster.objects.filter(vendor=vendor, region=region, enabled=True).first()


def endpoint_url(cluster: Cluster, endpoint: Endpoint) -> str | None:
    """``status.url``: the gateway's address for the endpoint, or for a private endpoint (which the gateway
    never serves) its Service's in-cluster address."""
    if endpoint.type == "private":
        return cluster.service_url_template.format(
            service=endpoint_object_name(endpoint.name), port=80,
            namespace=namespace_name(cluster.namespace_prefix, endpoint.account.slug))
    if not cluster.ingress_domain:
        return None
    return cluster.endpoint_url_template.format(host=host_id(endpoint.account.slug, endpoint.name),
                                                account=endpoint.account.slug, name=endpoint.name,
                                                domain=cluster.ingress_domain)


def platform() -> Platform:
    return Platform(managed_image=settings.MANAGED_IMAGE, fetcher_image=settings.MODEL_FETCHER_IMAGE,
                    hub_url=settings.HF_HUB_URL,
                    progress_deadline_seconds=settings.DEPLOYMENT_PROGRESS_DEADLINE_SECONDS,
                    gateway_namespace=settings.GATEWAY_NAMESPACE,
                    gateway_pod_labels=tuple(sorted(settings.GATEWAY_POD_LABELS.items())),
                    private_cidrs=tuple(settings.PRIVATE_ALLOWED_CIDRS),
                    pod_cidrs=tuple(settings.TENANT_POD_CIDRS), pull_always=settings.IMAGE_PULL_ALWAYS,
                    repository_size_limit=settings.REPOSITORY_VOLUME_SIZE_LIMIT, installation=settings.INSTALLATION_ID)


def _secrets_version(secrets: dict | None) -> str:
    """A keyed digest of the secret values (HMAC, so the annotation reveals nothing about them)."""
    if not secrets:
        return ""
    key = settings.SECRETS_ENCRYPTION_KEY.encode()
    return hmac.new(key, json.dumps(secrets, sort_keys=True).encode(), hashlib.sha256).hexdigest()[:16]


def ungranted_registry(endpoint: Endpoint) -> str | None:
    """The cloud registry (ECR) the endpoint's image would pull from with the platform's identity (the
    cluster's AWS access, or the nodes' instance role when it has none) although no operator granted it to
    the endpoint's account; None when that is not the case."""
    (_variant, body), = endpoint.image.items()
    body = body or {}
    found = ecr_registry(body.get("url") or "") if not body.get("credentials") else None
    if found is None or found[0] in endpoint.account.granted_registries:
        return None
    return found[0]


def target_for(endpoint: Endpoint, cluster: Cluster, *, refresh_registry: bool = False) -> EndpointTarget:
    """The renderer's input for a pinned endpoint (secrets decrypted here, in the worker, only).

    An ECR image without explicit credentials pulls with the cluster's cached ECR credential;
    ``refresh_registry`` fetches it first when missing or due (AWS call; raises AwsError)."""
    bundle = decrypt_json(endpoint.secrets_encrypted, default={}) or {}
    (variant, body), = endpoint.image.items()
    credentials = (body or {}).get("credentials")
    registry = None
    if credentials:
        registry = {"server": image_registry(body["url"]), "username": credentials["username"],
                    "password": bundle.get("registryPassword") or ""}
    elif (body or {}).get("url") and ungranted_registry(endpoint) is None:
        registry = registry_credentials(cluster=cluster, image_url=body["url"], refresh=refresh_registry)
    it = endpoint.instance
    return EndpointTarget(
        id=endpoint.pk, name=endpoint.name, account_label=dns_label(endpoint.account.slug),
        namespace=namespace_name(cluster.namespace_prefix, endpoint.account.slug),
        intent={Intent.RUN: "run", Intent.PAUSE: "pause", Intent.SCALE_TO_ZERO: "scale_to_zero"}[endpoint.intent],
        repository=endpoint.repository, revision=endpoint.pinned_revision, framework=endpoint.framework,
        task=endpoint.task, image=endpoint.image,
        instance=InstanceSpec(accelerator=it.accelerator, accelerator_count=it.accelerator_count,
                              accelerator_resource=it.accelerator_resource, cpu_request=it.cpu_request,
                              memory_request=it.memory_request, memory_limit=it.memory_limit,
                              cpu_limit=it.cpu_limit or str(it.vcpus),  # never unbounded: the instance's size
                              node_selector=it.node_selector, tolerations=it.tolerations),
        min_replica=endpoint.min_replica, max_replica=endpoint.max_replica,
        scaling_metric=endpoint.scaling_metric or "hardwareUsage", scaling_threshold=endpoint.scaling_threshold,
        command=endpoint.command, args=endpoint.args, env=dict(endpoint.env),
        secrets=bundle.get("secrets") or {}, secrets_version=_secrets_version(bundle.get("secrets")),
        registry=registry, access=endpoint.type,
        private_service=dict(endpoint.private_service) if endpoint.private_service else None, cluster_id=cluster.pk,
        hub_token=bool(endpoint.account.hub_token_encrypted),
    )


# ---------------------------------------------------------------- the loop
def endpoint_reconcile(*, endpoint_id: int) -> Outcome | None:
    """Converge one endpoint. Raises Retry when another worker holds it or a transient error interrupts;
    returns None if the endpoint no longer exists."""
    key = endpoint_lock_key(endpoint_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            raise Retry("another worker is reconciling this endpoint", delay=1)
    try:
        return _reconcile(endpoint_id)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _reconcile(endpoint_id: int) -> Outcome | None:
    endpoint = Endpoint.objects.select_related("instance", "account").filter(pk=endpoint_id).first()
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
            f"No cluster is registered for {instance.vendor}/{instance.region}; waiting for one",
            0, 0), url=None)
    if not endpoint.pinned_revision:
        try:
            sha = revision_resolve(repository=endpoint.repository, revision=endpoint.revision,
                                   token=account_hub_token(account=endpoint.account),
                                   platform_grants=endpoint.account.granted_repositories)
        except RevisionError as exc:
            if exc.transient:
                raise Retry(str(exc)) from exc
            return _record(endpoint, generation, Observation(State.FAILED, str(exc), 0, 0), url=None)
        Endpoint.objects.filter(pk=endpoint.pk, generation=generation).update(pinned_revision=sha)
        endpoint.pinned_revision = sha
    if (server := ungranted_registry(endpoint)) is not None:
        refused = (f"the image pulls from {server}, which this account may not pull from with the platform's "
                   "credentials: give the image's own credentials, or ask an operator to grant the registry")
        if endpoint.first_applied_at is not None and endpoint.intent == Intent.RUN:
            return _record(endpoint, generation, Observation(
                State.UPDATE_FAILED, f"Update refused, the previous version keeps serving: {refused}",
                endpoint.ready_replica, endpoint.target_replica), url=endpoint.url)
        return _record(endpoint, generation, Observation(State.FAILED, f"Endpoint refused: {refused}", 0, 0),
                       url=None)
    previously_applied = endpoint.first_applied_at is not None
    if not previously_applied:
        # Recorded before the first write, so a delete never skips objects a failed pass left behind.
        now = timezone.now()
        Endpoint.objects.filter(pk=endpoint.pk, first_applied_at__isnull=True).update(first_applied_at=now)
        endpoint.first_applied_at = now
    kube = kube_for(cluster)
    link_pending = None
    try:
        target = target_for(endpoint, cluster, refresh_registry=True)
        writes = _ensure_account(kube, endpoint, target.namespace)
        desired = render_endpoint(target, platform())
        live = _live_objects(kube, cluster, target.namespace, endpoint.pk)
        link = _unlink_if_unwanted(endpoint, cluster, target)  # before the NLB's Service is pruned
        result = apply_all(kube, desired, live, ENDPOINT_KINDS)
        observation = _observe(kube, endpoint, target, desired, result)
        if link is _WANTED:
            try:
                link = privatelink_ensure(cluster=cluster, endpoint_id=endpoint.pk, namespace=target.namespace,
                                          service=endpoint_object_name(endpoint.name, "private"),
                                          account_id=endpoint.private_service["accountId"],
                                          region=endpoint.private_service.get("region") or cluster.region)
            except PrivateLinkPending as exc:
                link, link_pending = endpoint.private_service_name, str(exc)
                state = State.INITIALIZING if observation.state == State.RUNNING else observation.state
                observation = Observation(state, f"{exc}; the endpoint is private", observation.ready,
                                          observation.target)
    except KubeError as exc:
        if exc.transient:
            _note(endpoint, generation, f"Kubernetes API problem, retrying ({exc}); last known state kept")
            raise Retry(str(exc), delay=exc.retry_after) from exc
        if previously_applied and endpoint.intent == Intent.RUN:
            # The previous objects still serve: report the failed update, keep the url.
            return _record(endpoint, generation, Observation(
                State.UPDATE_FAILED, f"Update rejected by Kubernetes, the previous version keeps serving: {exc}",
                endpoint.ready_replica, endpoint.target_replica), url=endpoint.url)
        return _record(endpoint, generation, Observation(State.FAILED, f"Rejected by Kubernetes: {exc}", 0, 0),
                       url=None)
    except AwsError as exc:
        if exc.transient:
            _note(endpoint, generation, f"AWS problem, retrying ({exc}); last known state kept")
            raise Retry(str(exc)) from exc
        return _record(endpoint, generation, Observation(State.FAILED, f"AWS setup failed: {exc}", 0, 0), url=None)
    keeps_url = observation.state in (State.RUNNING, State.UPDATING, State.UPDATE_FAILED, State.SCALED_TO_ZERO)
    _record(endpoint, generation, observation, url=endpoint_url(cluster, endpoint) if keeps_url else None,
            private_service_name=link)
    if link_pending and observation.state not in (State.INITIALIZING, State.UPDATING):
        raise Retry(link_pending, delay=10)  # settled states are not requeued; keep looking for the NLB
    log.info("reconcile.applied endpoint=%s generation=%s state=%s writes=%s", endpoint.pk, generation,
             observation.state, writes + result.writes)
    requeue = {State.INITIALIZING: REQUEUE_SECONDS, State.UPDATING: REQUEUE_SECONDS,
               State.FAILED: RECHECK_FAILED_SECONDS, State.UPDATE_FAILED: RECHECK_FAILED_SECONDS}
    delay = requeue.get(observation.state)
    if observation.state == State.RUNNING and observation.ready < observation.target:
        delay = RECHECK_SCALING_SECONDS
    return Outcome(observation.state, writes + result.writes, delay)


_WANTED = object()  # "this endpoint should have PrivateLink"
_KEEP = object()  # "leave the stored value as it is"


def _unlink_if_unwanted(endpoint: Endpoint, cluster: Cluster, target: EndpointTarget):
    """``_WANTED`` when the endpoint should have PrivateLink; otherwise delete any it had and return None."""
    if target.access == "private" and target.private_service:
        return _WANTED
    if endpoint.private_service_name:
        privatelink_remove(cluster=cluster, service_name=endpoint.private_service_name, namespace=target.namespace,
                           service=endpoint_object_name(endpoint.name, "private"))
    return None


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
    deployment = result.live.get(("Deployment", deployment_spec["metadata"]["name"]))
    if deployment and not deployment.get("status"):  # a fresh create answers before any controller ran
        deployment = kube.get("Deployment", target.namespace, deployment_spec["metadata"]["name"]) or deployment
    ready = (deployment or {}).get("status", {}).get("readyReplicas", 0) or 0
    if endpoint.intent == Intent.PAUSE:
        return Observation(State.PAUSED, "Endpoint paused by the user", ready, 0)
    if endpoint.intent == Intent.SCALE_TO_ZERO:
        return Observation(State.SCALED_TO_ZERO, "Endpoint scaled to zero; the next request wakes it", ready, 0)
    template_hash = deployment_spec["spec"]["template"]["metadata"]["annotations"][ANNOTATION_TEMPLATE]
    pods = kube.list("Pod", target.namespace, owned_selector(settings.INSTALLATION_ID, target.cluster_id, endpoint.pk))
    observation = observe(deployment=deployment, pods=pods, events=[], template_hash=template_hash)
    if "Unschedulable" in observation.message:
        events = kube.list("Event", target.namespace)
        observation = observe(deployment=deployment, pods=pods, events=events, template_hash=template_hash)
    return observation


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
                    _note(endpoint, endpoint.generation, f"Deleting: AWS problem, retrying ({exc})")
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
            _note(endpoint, endpoint.generation, f"Deleting: Kubernetes API problem, retrying ({exc})")
            raise Retry(str(exc), delay=exc.retry_after) from exc
    endpoint.delete()
    route_publish_on_commit(endpoint)  # autocommit here: published at once, as gone
    log.info("reconcile.deleted endpoint=%s", endpoint.pk)
    return None


def _note(endpoint: Endpoint, generation: int, message: str) -> None:
    """Replace only the message (the state stays the last one observed)."""
    Endpoint.objects.filter(pk=endpoint.pk, generation=generation).exclude(message=message[:1024]).update(
        message=message[:1024])


def _record(endpoint: Endpoint, generation: int, observation: Observation, *, url: str | None,
            private_service_name=_KEEP) -> Outcome:
    """Write status only if it changed, only if the spec is still the one rendered; event on state change.
    ``private_service_name`` is left as it is unless given."""
    fields = {"state": observation.state, "message": observation.message[:1024], "url": url,
              "ready_replica": observation.ready, "target_replica": observation.target,
              "observed_generation": generation, "pinned_revision": endpoint.pinned_revision}
    if private_service_name is not _KEEP:
        fields["private_service_name"] = private_service_name
    if all(getattr(endpoint, name) == value for name, value in fields.items()):
        return Outcome(observation.state)
    with transaction.atomic():
        current = Endpoint.objects.select_for_update().filter(pk=endpoint.pk, generation=generation).first()
        if current is None:  # the spec moved on; the newer generation's reconcile will report
            return Outcome(observation.state)
        Endpoint.objects.filter(pk=endpoint.pk).update(**fields, last_reconciled_at=timezone.now())
        route_publish_on_commit(endpoint)  # the gateway releases held requests when this says running
        if current.state != observation.state:
            EndpointEvent.objects.create(endpoint=endpoint, kind="state", message=observation.message[:1024],
                                         from_state=current.state, to_state=observation.state, generation=generation)
    return Outcome(observation.state)
