"""Pure rendering: an endpoint spec (plain data) -> the Kubernetes manifests that run it.

No ORM, no I/O, no clock: the same input always gives the same dicts, which the golden tests pin.
``render_account`` gives the per-account namespace objects, ``render_endpoint`` the per-endpoint ones.
"""

import base64
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field

from controlplane.images import DEVICE_RESOURCE, MANAGED_VARIANTS, engine_env_name, image_health_route, image_port
from controlplane.names import SERVICE_PORT, endpoint_object_name
from endpoints.scaling import DEFAULT_METRIC, scaling_target

from .names import (
    ANNOTATION_SECRETS,
    ANNOTATION_TEMPLATE,
    LABEL_ID,
    account_labels,
    endpoint_labels,
    private_lb_name,
)

REPOSITORY_DIR = "/repository"
# vCPUs that accompany one accelerator device at most in the catalog (l40s x8: 192 / 8).
CPUS_PER_DEVICE = 24


@dataclass(frozen=True)
class InstanceSpec:
    accelerator: str
    accelerator_count: int
    accelerator_resource: str
    cpu_request: str
    memory_request: str
    cpu_limit: str = ""
    memory_limit: str = ""
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)


@dataclass(frozen=True)
class Platform:
    """Cluster- and installation-wide inputs."""

    managed_image: str
    fetcher_image: str
    hub_url: str
    progress_deadline_seconds: int = 600
    # Where the gateway's pods run: the only source admitted to public/protected endpoints.
    gateway_namespace: str = "controlplane"
    gateway_pod_labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/component", "gateway"),)
    # Sources admitted to private endpoints (e.g. the VPC CIDR their PrivateLink NLB sends from).
    private_cidrs: tuple[str, ...] = ()
    # The cluster's pod and Service ranges: excepted from every private ipBlock that contains them, since a
    # CNI may match pod addresses against ipBlocks (a tenant pod must not pass as private traffic).
    pod_cidrs: tuple[str, ...] = ()
    # Pull every tenant image on each start (True), or only those that need credentials (False): a cached
    # private image must never start for a tenant that could not pull it.
    pull_always: bool = False
    # The repository volume's size limit (an unbounded emptyDir could fill the node's disk).
    repository_size_limit: str = "200Gi"
    # This installation's id, labelled on every endpoint object with the cluster registration's id.
    installation: str = "default"


@dataclass(frozen=True)
class EndpointTarget:
    """Everything the renderer needs about one endpoint, already resolved (pinned sha, decrypted secrets)."""

    id: int
    name: str
    account_label: str
    namespace: str
    intent: str  # run | pause | scale_to_zero
    repository: str
    revision: str  # the pinned commit sha
    framework: str
    task: str | None
    image: dict
    instance: InstanceSpec
    min_replica: int
    max_replica: int
    scaling_metric: str = DEFAULT_METRIC
    scaling_threshold: float | None = None
    command: list | None = None
    args: list | None = None
    env: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    secrets_version: str = ""  # a keyed digest of the secret values: rolls the pods when they change
    registry: dict | None = None  # {"server", "username", "password"}
    access: str = "authenticated"  # the endpoint's type: public | protected | authenticated | private
    private_service: dict | None = None  # {"accountId", "region"}: PrivateLink through an internal NLB
    cluster_id: int = 0  # the cluster registration (Cluster row) the objects go to
    hub_token: bool = False  # the account has its own Hub token (its namespace's hub-token Secret)
    canary: bool = False  # a canary rollout's new version, rendered beside the stable one (``CANARY``)


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


# ---------------------------------------------------------------- per account
# Pod Security admission on tenant namespaces: baseline enforced (no privileged pods, host namespaces or
# host paths; GPUs need nothing more), restricted reported as warnings and in the audit log.
POD_SECURITY = {"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted"}


def render_account(*, namespace: str, account_label: str, quota: dict[str, int], hub_token: str | None,
                   egress_denied: tuple[str, ...] | None = None) -> list[dict]:
    """Namespace (Pod Security labelled), ResourceQuota (twice the quota, so rolling updates can surge:
    admission holds the real line; this is the backstop), default-deny ingress NetworkPolicy, the egress
    NetworkPolicy unless ``egress_denied`` is None, and the Secret of the account's own Hub token if it has one
    (never the platform's)."""
    labels = account_labels(account_label)
    devices = {DEVICE_RESOURCE[acc]: quota.get(acc, 0) for acc in DEVICE_RESOURCE}
    cpus = quota.get("cpu", 0) + CPUS_PER_DEVICE * sum(devices.values())
    hard = {"requests.cpu": str(2 * cpus), **{f"requests.{res}": str(2 * n) for res, n in devices.items()}}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {**labels, **POD_SECURITY}}},
        {"apiVersion": "v1", "kind": "ResourceQuota",
         "metadata": {"name": "endpoints-quota", "namespace": namespace, "labels": labels},
         "spec": {"hard": hard}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "default-deny-ingress", "namespace": namespace, "labels": labels},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    ]
    if egress_denied is not None:
        objects.append(_egress_policy(namespace, labels, egress_denied))
    if hub_token:
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": "hub-token", "namespace": namespace, "labels": labels},
                        "data": {"token": _b64(hub_token)}})
    return objects


def _egress_policy(namespace: str, labels: dict, denied: tuple[str, ...]) -> dict:
    """Tenant pods may reach the cluster DNS and the internet (the Hub, their own services), never the
    ``denied`` ranges: the pod, service and node networks (other tenants, the control plane, Redis and
    Postgres) and the node metadata address. An ipBlock is the only destination admitted, so no pod is
    selected as a peer, whatever the CNI makes of pod IPs."""
    v6 = tuple(c for c in denied if ":" in c)
    v4 = tuple(c for c in denied if ":" not in c)
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "tenant-egress", "namespace": namespace, "labels": labels},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "ports": dns_ports},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", **({"except": list(v4)} if v4 else {})}},
                        {"ipBlock": {"cidr": "::/0", **({"except": list(v6)} if v6 else {})}}]}]}}


# ---------------------------------------------------------------- per endpoint
# A canary's objects: its own Deployment, Service, HPA, Secrets and gateway NetworkPolicy, named with the
# ``canary`` suffix. They carry the endpoint's labels (listed, pruned and watched with its other objects);
# its pods carry ``<id>-canary`` as their id label, so the stable's Service, selector and policy never
# select them, nor the canary's the stable's pods.
CANARY = "canary"


def object_name(target: EndpointTarget, suffix: str = "") -> str:
    if target.canary:
        suffix = f"{CANARY}-{suffix}" if suffix else CANARY
    return endpoint_object_name(target.name, suffix)


def pod_id(target: EndpointTarget) -> str:
    """The id label of the target's pods (and what its Deployment, Service and policies select)."""
    return f"{target.id}-{CANARY}" if target.canary else str(target.id)


def _variant(target: EndpointTarget) -> tuple[str, dict]:
    (variant, body), = target.image.items()
    return variant, body or {}


# Variant fields the renderer uses itself; every other scalar is an engine option passed as env.
VARIANT_FIELDS = {"url", "healthRoute", "port", "credentials", "env"}
def _env(target: EndpointTarget) -> list[dict]:
    variant, body = _variant(target)
    env = {
        "HF_MODEL_DIR": REPOSITORY_DIR, "MODEL_ID": REPOSITORY_DIR, "HF_REVISION": target.revision,
        "HF_HUB_OFFLINE": "1", "HF_FRAMEWORK": target.framework,
        **({"HF_TASK": target.task} if target.task else {}),
    }
    for key, value in body.items():
        if key not in VARIANT_FIELDS and value is not None and not isinstance(value, (dict, list)):
            env[engine_env_name(variant, key)] = str(value).lower() if isinstance(value, bool) else str(value)
    env.update(body.get("env") or {})
    env.update(target.env)
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _resources(instance: InstanceSpec) -> dict:
    requests = {"cpu": instance.cpu_request, "memory": instance.memory_request}
    limits = {k: v for k, v in (("cpu", instance.cpu_limit), ("memory", instance.memory_limit)) if v}
    if instance.accelerator_resource and instance.accelerator_count:
        requests[instance.accelerator_resource] = str(instance.accelerator_count)
        limits[instance.accelerator_resource] = str(instance.accelerator_count)
    return {"requests": requests, **({"limits": limits} if limits else {})}


# Every tenant container: no privilege escalation, no capabilities but binding a low port (the managed image
# serves on 80), the runtime's default seccomp profile. Not runAsNonRoot: many serving images run as root,
# which the namespace's baseline Pod Security level allows (restricted is warned and audited).
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "seccompProfile": {"type": "RuntimeDefault"},
                      "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
FETCHER_UID = 1000  # the model fetcher is our image: it runs as a plain user


def _deployment(target: EndpointTarget, platform: Platform, labels: dict) -> dict:
    name = object_name(target)
    variant, body = _variant(target)
    port = image_port(target.image)
    image = platform.managed_image if variant in MANAGED_VARIANTS else body["url"]
    container = {
        "name": "inference",
        "image": image,
        "imagePullPolicy": "Always" if target.registry or platform.pull_always else "IfNotPresent",
        "securityContext": CONTAINER_SECURITY,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": _env(target),
        "resources": _resources(target.instance),
        "readinessProbe": {"httpGet": {"path": image_health_route(target.image), "port": port},
                           "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3},
        "volumeMounts": [{"name": "repository", "mountPath": REPOSITORY_DIR, "readOnly": True}],
    }
    if target.command is not None:
        container["command"] = list(target.command)
    if target.args is not None:
        container["args"] = list(target.args)
    if target.secrets:
        container["envFrom"] = [{"secretRef": {"name": object_name(target, "secrets")}}]
    fetcher_env = [{"name": "HF_ENDPOINT", "value": platform.hub_url}]
    if target.hub_token:
        fetcher_env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "hub-token", "key": "token", "optional": True}}})
    fetcher = {
        "name": "fetch-model",
        "image": platform.fetcher_image,
        "command": ["hf", "download", target.repository, "--revision", target.revision,
                    "--local-dir", REPOSITORY_DIR],
        "env": fetcher_env,
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": {**CONTAINER_SECURITY, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                            "runAsUser": FETCHER_UID, "runAsGroup": FETCHER_UID},
        "volumeMounts": [{"name": "repository", "mountPath": REPOSITORY_DIR}],
    }
    pod_spec = {
        "initContainers": [fetcher],
        "containers": [container],
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "repository", "emptyDir": {"sizeLimit": platform.repository_size_limit}}],
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if target.instance.node_selector:
        pod_spec["nodeSelector"] = dict(target.instance.node_selector)
    if target.instance.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in target.instance.tolerations]
    if target.registry:
        pod_spec["imagePullSecrets"] = [{"name": object_name(target, "registry")}]
    template = {"metadata": {"labels": {**labels, LABEL_ID: pod_id(target)}}, "spec": pod_spec}
    if target.secrets_version:
        # envFrom is read when a container starts: a changed secret must restart the pods to reach them.
        template["metadata"]["annotations"] = {ANNOTATION_SECRETS: target.secrets_version}
    template["metadata"]["annotations"] = {**template["metadata"].get("annotations", {}),
                                           ANNOTATION_TEMPLATE: digest(template)}
    running = target.intent == "run"
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
        "spec": {
            "replicas": max(target.min_replica, 1) if running else 0,
            "selector": {"matchLabels": {LABEL_ID: pod_id(target)}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "progressDeadlineSeconds": platform.progress_deadline_seconds,
            "revisionHistoryLimit": 3,
            "template": template,
        },
    }


def _service(target: EndpointTarget, labels: dict) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": object_name(target), "namespace": target.namespace, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": {LABEL_ID: pod_id(target)},
                 "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }


def _hpa_metric(target: EndpointTarget) -> dict:
    metric, threshold = scaling_target(target.scaling_metric, target.scaling_threshold)
    if metric == "pendingRequests":
        return {"type": "Pods", "pods": {"metric": {"name": "gateway_pending_requests"},
                                         "target": {"type": "AverageValue",
                                                    "averageValue": f"{round(threshold * 1000)}m"}}}
    if target.instance.accelerator == "cpu":
        return {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": round(threshold)}}}
    return {"type": "Pods", "pods": {"metric": {"name": "accelerator_utilization_percent"},
                                     "target": {"type": "AverageValue", "averageValue": str(round(threshold))}}}


def _hpa(target: EndpointTarget, labels: dict) -> dict:
    name = object_name(target)
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(target.min_replica, 1),
            "maxReplicas": max(target.max_replica, 1),
            "metrics": [_hpa_metric(target)],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
            },
        },
    }


def _secret(target: EndpointTarget, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": object_name(target, "secrets"), "namespace": target.namespace,
                         "labels": labels},
            "data": {k: _b64(v) for k, v in sorted(target.secrets.items())}}


def _pull_secret(target: EndpointTarget, labels: dict) -> dict:
    registry = target.registry
    auth = _b64(f"{registry['username']}:{registry.get('password') or ''}")
    config = {"auths": {registry["server"]: {"username": registry["username"],
                                             "password": registry.get("password") or "", "auth": auth}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": object_name(target, "registry"), "namespace": target.namespace,
                         "labels": labels},
            "data": {".dockerconfigjson": _b64(json.dumps(config, sort_keys=True))}}


def _policy(target: EndpointTarget, labels: dict, suffix: str, sources: list[dict]) -> dict:
    """Admit ``sources`` to the endpoint's serving port; the namespace's default deny refuses the rest."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": object_name(target, suffix), "namespace": target.namespace,
                         "labels": labels},
            "spec": {"podSelector": {"matchLabels": {LABEL_ID: pod_id(target)}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": "http"}]}]}}


def _access(target: EndpointTarget, platform: Platform, labels: dict) -> list[dict]:
    """Who may reach the pods. Public and protected endpoints: the gateway's pods only. Private ones: never
    the gateway; the platform's private sources if any, and with ``privateService`` an internal NLB
    (AWS load-balancer controller, IP targets) for PrivateLink."""
    if target.access != "private":
        gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": platform.gateway_namespace}},
                   "podSelector": {"matchLabels": dict(platform.gateway_pod_labels)}}
        return [_policy(target, labels, "gateway", [gateway])]
    objects = []
    if target.private_service:
        name = endpoint_object_name(target.name, "private")
        objects.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": target.namespace, "labels": labels, "annotations": {
                "service.beta.kubernetes.io/aws-load-balancer-type": "external",
                "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
                "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
                "service.beta.kubernetes.io/aws-load-balancer-name": private_lb_name(target.namespace, name)}},
            "spec": {"type": "LoadBalancer", "selector": {LABEL_ID: pod_id(target)},
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]},
        })
    if platform.private_cidrs:
        objects.append(_policy(target, labels, "private",
                               [_private_block(c, platform.pod_cidrs) for c in platform.private_cidrs]))
    return objects


def _private_block(cidr: str, pod_cidrs: tuple[str, ...]) -> dict:
    """An ipBlock admitting ``cidr`` but the pod ranges strictly inside it. Settings refuse a pod range that
    contains ``cidr`` (the block would admit pods only); ranges that do not overlap need no exception."""
    allowed = ipaddress.ip_network(cidr, strict=False)
    inside = [p for p in pod_cidrs if (net := ipaddress.ip_network(p, strict=False)).version == allowed.version
              and net != allowed and net.subnet_of(allowed)]
    return {"ipBlock": {"cidr": cidr, **({"except": inside} if inside else {})}}


def render_endpoint(target: EndpointTarget, platform: Platform) -> list[dict]:
    """The endpoint's objects, in apply order: Secrets, Deployment, Services, the HPA while it runs, and the
    NetworkPolicies that say who reaches it (``_access``).

    Pause and scale-to-zero render zero replicas and no HPA (the HPA would scale a paused endpoint back up).
    """
    labels = endpoint_labels(target.id, target.name, target.account_label, installation=platform.installation,
                             cluster_id=target.cluster_id)
    objects = []
    if target.secrets:
        objects.append(_secret(target, labels))
    if target.registry:
        objects.append(_pull_secret(target, labels))
    objects.append(_deployment(target, platform, labels))
    objects.append(_service(target, labels))
    access = _access(target, platform, labels)
    objects.extend(o for o in access if o["kind"] == "Service")
    if target.intent == "run":
        objects.append(_hpa(target, labels))
    objects.extend(o for o in access if o["kind"] != "Service")
    return objects
