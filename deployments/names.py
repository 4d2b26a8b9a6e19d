"""Deterministic, length-safe Kubernetes names and the labels every owned object carries."""

import hashlib
import re

from endpoints.catalog import OBJECT_NAME_SUFFIXES

MANAGED_BY = "controlplane"
LABEL_ID = "endpoints.controlplane.dev/id"
LABEL_ACCOUNT = "endpoints.controlplane.dev/account"
# Which installation, and which of its cluster registrations, owns an endpoint's objects: one physical
# cluster registered twice, or shared by two installations, must never see one prune the other's objects.
LABEL_INSTALLATION = "endpoints.controlplane.dev/installation"
LABEL_CLUSTER = "endpoints.controlplane.dev/cluster"
ANNOTATION_HASH = "endpoints.controlplane.dev/spec-hash"
ANNOTATION_TEMPLATE = "endpoints.controlplane.dev/template-hash"
ANNOTATION_SECRETS = "endpoints.controlplane.dev/secrets-version"
MAX_LABEL = 63


def _short_hash(value: str, length: int = 6) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def dns_label(value: str, *, max_length: int = MAX_LABEL) -> str:
    """``value`` as a DNS-1123 label: lowercase alphanumerics and '-', at most ``max_length``.

    When anything had to change (case, characters, length), a hash of the original is appended so two
    different inputs never map to the same label.
    """
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-") or "x"
    if cleaned == value and len(cleaned) <= max_length:
        return cleaned
    suffix = _short_hash(value)
    return f"{cleaned[: max_length - len(suffix) - 1].rstrip('-')}-{suffix}"


def namespace_name(prefix: str, account_slug: str) -> str:
    return dns_label(f"{prefix}{account_slug}")


def endpoint_object_name(endpoint_name: str, suffix: str = "") -> str:
    """``ep-<name>``, or ``<suffix>-ep-<name>`` for an endpoint's secondary objects (``suffix`` one of
    ``OBJECT_NAME_SUFFIXES``): starts with a letter (Services need DNS-1035), fits in 63 characters, and no
    two endpoints' objects can share a name whatever they are called."""
    if suffix and suffix not in OBJECT_NAME_SUFFIXES:
        raise ValueError(f"unknown object name suffix {suffix!r}")
    return dns_label(f"{suffix}-ep-{endpoint_name}" if suffix else f"ep-{endpoint_name}")


def host_id(account_slug: str, name: str) -> str:
    """The endpoint's DNS-safe, stable, unique host label: ``<name>-<16 hex of sha256(account/name)>``.

    The gateway routes ``<host_id>.<domain>`` to the endpoint; endpoint names are DNS labels of at most
    32 characters, so the label is at most 49. 64 bits of hash make a chosen collision with another
    tenant's host infeasible.
    """
    return dns_label(f"{name}-{hashlib.sha256(f'{account_slug}/{name}'.encode()).hexdigest()[:16]}")


def private_lb_name(namespace: str, service: str) -> str:
    """The AWS load balancer name of a private endpoint's internal NLB: at most 32 characters, stable, so
    the load-balancer controller creates it under a name PrivateLink can look up."""
    return f"cp-{_short_hash(f'{namespace}/{service}', 24)}"


def account_labels(account_label: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/part-of": "inference-endpoints",
            LABEL_ACCOUNT: account_label}


def owner_labels(installation: str, cluster_id: int) -> dict[str, str]:
    return {LABEL_INSTALLATION: installation, LABEL_CLUSTER: str(cluster_id)}


def endpoint_labels(endpoint_id: int, endpoint_name: str, account_label: str, *, installation: str,
                    cluster_id: int) -> dict[str, str]:
    return {**account_labels(account_label), "app.kubernetes.io/name": "inference-endpoint",
            "app.kubernetes.io/instance": endpoint_object_name(endpoint_name), LABEL_ID: str(endpoint_id),
            **owner_labels(installation, cluster_id)}


def owned_selector(installation: str, cluster_id: int, endpoint_id: int | None = None) -> str:
    """The label selector of the endpoint objects this installation's ``cluster_id`` registration owns (one
    endpoint's, or every endpoint's: those carrying an id)."""
    owned = f"app.kubernetes.io/managed-by={MANAGED_BY},{selector(**owner_labels(installation, cluster_id))}"
    return f"{owned},{LABEL_ID}={endpoint_id}" if endpoint_id is not None else f"{owned},{LABEL_ID}"


def selector(**labels: str) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())
