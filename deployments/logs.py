"""Container logs of an endpoint's replicas, read from its cluster."""

from django.conf import settings

from controlplane.errorcodes import Code
from controlplane.errors import NotFound, ServiceUnavailable
from controlplane.names import namespace_name
from endpoints.models import Endpoint

from .kube import KubeError, kube_for
from .names import owned_selector
from .selectors import cluster_for


def endpoint_logs(*, endpoint: Endpoint, tail: int, replica: str | None = None) -> str:
    """The last ``tail`` lines of each replica's server container (or of ``replica`` only), each block
    headed ``==> <pod> <==``. NotFound for an unknown replica; ServiceUnavailable if the cluster is down."""
    cluster = cluster_for(vendor=endpoint.instance.vendor, region=endpoint.instance.region)
    if cluster is None or endpoint.first_applied_at is None:
        return ""
    kube = kube_for(cluster)
    namespace = namespace_name(cluster.namespace_prefix, endpoint.account.slug)
    try:
        owned = owned_selector(settings.INSTALLATION_ID, cluster.pk, endpoint.pk)
        pods = sorted(p["metadata"]["name"] for p in kube.list("Pod", namespace, owned))
        if replica is not None:
            if replica not in pods:
                raise NotFound(f"No replica '{replica}' (replicas: {', '.join(pods) or 'none'})")
            pods = [replica]
        blocks = [f"==> {pod} <==\n{kube.logs(namespace, pod, tail=tail)}" for pod in pods]
    except KubeError as exc:
        raise ServiceUnavailable(f"The cluster could not be read: {exc}", code=Code.CLUSTER_UNAVAILABLE) from exc
    return "\n".join(blocks)
