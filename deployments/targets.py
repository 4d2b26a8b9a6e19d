"""What the renderer is given: an endpoint row and its cluster turned into plain data (``EndpointTarget``),
the platform's settings (``Platform``), and the address the endpoint is reached at."""

import hashlib
import hmac
import json

from django.conf import settings

from controlplane.images import image_registry
from controlplane.names import SERVICE_PORT, dns_label, endpoint_object_name, host_id, namespace_name
from endpoints.models import Endpoint
from endpoints.scaling import DEFAULT_METRIC
from endpoints.schedules import scheduled_bounds
from endpoints.services import endpoint_secrets

from .models import Cluster
from .registry import ecr_registry, registry_credentials
from .render import EndpointTarget, InstanceSpec, Platform


def endpoint_url(cluster: Cluster, endpoint: Endpoint) -> str | None:
    """``status.url``: the gateway's address for the endpoint, or for a private endpoint (which the gateway
    never serves) its Service's in-cluster address."""
    if endpoint.type == "private":
        return cluster.service_url_template.format(
            service=endpoint_object_name(endpoint.name), port=SERVICE_PORT,
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
    secrets, registry_password = endpoint_secrets(endpoint=endpoint)
    (variant, body), = endpoint.image.items()
    credentials = (body or {}).get("credentials")
    registry = None
    if credentials:
        registry = {"server": image_registry(body["url"]), "username": credentials["username"],
                    "password": registry_password or ""}
    elif (body or {}).get("url") and ungranted_registry(endpoint) is None:
        registry = registry_credentials(cluster=cluster, image_url=body["url"], refresh=refresh_registry)
    it = endpoint.instance
    # The bounds in force: a schedule's while its window is open (as beat recorded it), else the base ones.
    min_replica, max_replica = scheduled_bounds(endpoint)
    return EndpointTarget(
        id=endpoint.pk, name=endpoint.name, account_label=dns_label(endpoint.account.slug),
        namespace=namespace_name(cluster.namespace_prefix, endpoint.account.slug),
        intent=str(endpoint.intent),  # run | pause | scale_to_zero (a deleting endpoint is torn down, never rendered)
        repository=endpoint.repository, revision=endpoint.pinned_revision, framework=endpoint.framework,
        task=endpoint.task, image=endpoint.image,
        instance=InstanceSpec(accelerator=it.accelerator, accelerator_count=it.accelerator_count,
                              accelerator_resource=it.accelerator_resource, cpu_request=it.cpu_request,
                              memory_request=it.memory_request, memory_limit=it.memory_limit,
                              cpu_limit=it.cpu_limit or str(it.vcpus),  # never unbounded: the instance's size
                              node_selector=it.node_selector, tolerations=it.tolerations),
        min_replica=min_replica, max_replica=max_replica,
        scaling_metric=endpoint.scaling_metric or DEFAULT_METRIC, scaling_threshold=endpoint.scaling_threshold,
        command=endpoint.command, args=endpoint.args, env=dict(endpoint.env),
        secrets=secrets, secrets_version=_secrets_version(secrets),
        registry=registry, access=endpoint.type,
        private_service=dict(endpoint.private_service) if endpoint.private_service else None, cluster_id=cluster.pk,
        hub_token=bool(endpoint.account.hub_token_encrypted),
    )
