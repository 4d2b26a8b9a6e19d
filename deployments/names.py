"""The labels and annotations every owned Kubernetes object carries, the selectors that find them, and the
names of the cloud objects beside them. The names of namespaces and objects are ``controlplane.names``."""

from controlplane.names import endpoint_object_name, short_hash

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


def private_lb_name(namespace: str, service: str) -> str:
    """The AWS load balancer name of a private endpoint's internal NLB: at most 32 characters, stable, so
    the load-balancer controller creates it under a name PrivateLink can look up."""
    return f"cp-{short_hash(f'{namespace}/{service}', 24)}"


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
