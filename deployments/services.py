"""Cluster registry writes."""

import re

import yaml
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.encryption import encrypt_json
from controlplane.errorcodes import Code
from controlplane.errors import Conflict, InvalidSpec
from controlplane.services import audit_record

from .models import Cluster

NAMESPACE_PREFIX_RE = re.compile(r"[a-z][a-z0-9-]{0,19}")
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"


def _api_server(kubeconfig: dict, context: str) -> str:
    """The server URL the kubeconfig's ``context`` (or current context) points at; "" if it names none."""
    name = context or kubeconfig.get("current-context") or ""
    contexts = {c.get("name"): c.get("context") or {} for c in kubeconfig.get("contexts") or []}
    cluster_name = (contexts.get(name) or next(iter(contexts.values()), {})).get("cluster")
    clusters = {c.get("name"): c.get("cluster") or {} for c in kubeconfig.get("clusters") or []}
    return str((clusters.get(cluster_name) or {}).get("server") or "").rstrip("/")


@transaction.atomic
def cluster_register(*, name: str, vendor: str, region: str, kubeconfig_text: str | None = None,
                     context: str = "", in_cluster: bool = False, namespace_prefix: str = "ie-",
                     ingress_domain: str = "", endpoint_url_template: str | None = None,
                     service_url_template: str | None = None, aws_access_key_id: str = "",
                     aws_secret_access_key: str = "", aws_session_token: str = "", aws_profile: str = "",
                     aws_ambient: bool = False, simulated: bool = False, force: bool = False) -> Cluster:
    """Register (or update, by name) the cluster serving (vendor, region); the kubeconfig is stored encrypted.

    AWS access (PrivateLink, ECR pulls) is optional and given at most one way: access keys (stored
    encrypted), a profile name of the worker's AWS config, or the worker's ambient credentials.
    Raises InvalidSpec for an unreadable kubeconfig or unknown context, or conflicting AWS options;
    Conflict if another enabled cluster already serves (vendor, region). Pending endpoints there converge
    on the next sweep. ``simulated`` marks a cluster of simulated nodes (the gateway answers its endpoints'
    requests with 503: no container runs there). An API server another registration already uses is a
    Conflict (``cluster_duplicate``) unless ``force``: two registrations of one cluster would each see the
    other's namespaces as theirs.
    """
    aws_ways = [bool(aws_access_key_id or aws_secret_access_key), bool(aws_profile), aws_ambient]
    if sum(aws_ways) > 1:
        raise InvalidSpec("Give AWS access one way: keys, a profile, or ambient credentials",
                          fields={"aws": ["more than one way given"]})
    if aws_ways[0] and not (aws_access_key_id and aws_secret_access_key):
        raise InvalidSpec("AWS keys need both the access key id and the secret access key",
                          fields={"aws": ["incomplete keys"]})
    if not NAMESPACE_PREFIX_RE.fullmatch(namespace_prefix or ""):
        # An empty prefix would put tenants' namespaces beside the system ones (kube-system, default).
        raise InvalidSpec("The namespace prefix must be 1 to 20 lowercase letters, digits or '-', starting with a "
                          "letter", fields={"namespacePrefix": ["invalid or empty"]})
    if in_cluster == bool(kubeconfig_text):
        raise InvalidSpec("Give exactly one of a kubeconfig or in-cluster mode", fields={"kubeconfig": ["required"]})
    encrypted = ""
    if kubeconfig_text:
        try:
            kubeconfig = yaml.safe_load(kubeconfig_text)
        except yaml.YAMLError as exc:
            raise InvalidSpec(f"The kubeconfig is not valid YAML: {exc}", fields={"kubeconfig": ["not YAML"]}) from exc
        contexts = [c.get("name") for c in (kubeconfig or {}).get("contexts") or []]
        if not contexts:
            raise InvalidSpec("The kubeconfig has no contexts", fields={"kubeconfig": ["no contexts"]})
        if context and context not in contexts:
            raise InvalidSpec(f"No context '{context}' in the kubeconfig (has: {', '.join(contexts)})",
                              fields={"context": ["unknown"]})
        encrypted = encrypt_json(kubeconfig)
        api_server = _api_server(kubeconfig, context)
    else:
        api_server = IN_CLUSTER_SERVER
    twin = Cluster.objects.filter(api_server=api_server).exclude(name=name).exclude(api_server="").first()
    unchanged = Cluster.objects.filter(name=name, api_server=api_server).exists()  # an update of a known sharer
    if twin and not force and not unchanged:
        raise Conflict(f"Cluster '{twin.name}' is registered with the same API server ({api_server}); register it "
                       "once, or pass force to share it", code=Code.CLUSTER_DUPLICATE, fields={"kubeconfig": ["duplicate"]})
    defaults = {"vendor": vendor, "region": region, "kubeconfig_encrypted": encrypted, "context": context,
                "api_server": api_server,
                "in_cluster": in_cluster, "namespace_prefix": namespace_prefix, "ingress_domain": ingress_domain,
                "enabled": True, "simulated": simulated, "updated_at": timezone.now(), "aws_profile": aws_profile,
                "aws_ambient": aws_ambient,
                "aws_credentials_encrypted": encrypt_json({"accessKeyId": aws_access_key_id,
                                                           "secretAccessKey": aws_secret_access_key,
                                                           "sessionToken": aws_session_token or None})
                if aws_access_key_id else ""}
    if endpoint_url_template:
        defaults["endpoint_url_template"] = endpoint_url_template
    if service_url_template:
        defaults["service_url_template"] = service_url_template
    try:
        with transaction.atomic():
            cluster, _ = Cluster.objects.update_or_create(name=name, defaults=defaults)
    except IntegrityError as exc:
        raise Conflict(f"Another enabled cluster already serves {vendor}/{region}", code=Code.CLUSTER_EXISTS) from exc
    return cluster


# Fields an operator may change on a registered cluster (the kubeconfig and AWS keys only by registering again).
EDITABLE = ("name", "vendor", "region", "context", "namespace_prefix", "ingress_domain", "endpoint_url_template",
            "service_url_template", "enabled", "simulated", "aws_profile", "aws_ambient")


@transaction.atomic
def cluster_update(*, cluster: Cluster, changes: dict, actor=None) -> Cluster:
    """An operator's edit of a registered cluster (the admin): only ``EDITABLE`` fields, validated as a whole
    (InvalidSpec naming the field), Conflict (``cluster_exists``) when two enabled clusters would serve one
    region; audited with the changed fields. ``updated_at`` moves, so every worker rebuilds its client."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidSpec(f"Not editable here: {', '.join(unknown)}", fields={k: ["not editable"] for k in unknown})
    prefix = changes.get("namespace_prefix", cluster.namespace_prefix)
    if not NAMESPACE_PREFIX_RE.fullmatch(prefix or ""):
        raise InvalidSpec("The namespace prefix must be 1 to 20 lowercase letters, digits or '-', starting with a "
                          "letter", fields={"namespacePrefix": ["invalid or empty"]})
    diff = {k: [getattr(cluster, k), v] for k, v in changes.items() if getattr(cluster, k) != v}
    for name, value in changes.items():
        setattr(cluster, name, value)
    cluster.updated_at = timezone.now()
    try:
        cluster.full_clean(exclude=["kubeconfig_encrypted", "aws_credentials_encrypted", "api_server"],
                           validate_constraints=False)
    except ValidationError as exc:
        raise InvalidSpec("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()),
                          fields=exc.message_dict) from exc
    try:
        with transaction.atomic():
            cluster.save()
    except IntegrityError as exc:
        raise Conflict(f"Another enabled cluster already serves {cluster.vendor}/{cluster.region}",
                       code=Code.CLUSTER_EXISTS) from exc
    if diff:
        audit_record(actor=actor, action="cluster.update", target=cluster.name, diff=diff)
    return cluster
