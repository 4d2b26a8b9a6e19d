"""The drift sweep: compare every converged endpoint's live objects with what it should have.

It costs one LIST per endpoint kind per cluster (label-selected, across namespaces), whatever the number
of endpoints, and writes nothing itself: drifted endpoints are re-enqueued for a normal reconcile, and
objects whose endpoint row no longer exists are deleted.
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings

from endpoints.models import Endpoint, Intent

from .apply import stamped, up_to_date
from .kube import KubeError, kube_for
from .models import Cluster
from .names import LABEL_ID, owned_selector
from .reconcile import ENDPOINT_KINDS
from .render import render_endpoint
from .targets import platform, target_for

log = logging.getLogger(__name__)


@dataclass
class DriftReport:
    clusters: int = 0
    endpoints_checked: int = 0
    list_calls: int = 0
    drifted: list[int] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


def drift_sweep(*, enqueue) -> DriftReport:
    """Check every enabled cluster; ``enqueue(endpoint_id)`` is called for each drifted endpoint."""
    report = DriftReport()
    shared = platform()
    for cluster in Cluster.objects.filter(enabled=True):
        report.clusters += 1
        kube = kube_for(cluster)
        live: dict[str, dict[tuple[str, str], dict]] = {}
        try:
            for kind in ENDPOINT_KINDS:
                report.list_calls += 1
                for obj in kube.list(kind, None, owned_selector(settings.INSTALLATION_ID, cluster.pk)):
                    owner = obj["metadata"]["labels"][LABEL_ID]
                    live.setdefault(owner, {})[(kind, obj["metadata"]["name"])] = obj
        except KubeError as exc:
            log.warning("drift.cluster_unreachable cluster=%s error=%s", cluster.name, exc)
            report.unreachable.append(cluster.name)
            continue
        endpoints = (Endpoint.objects.filter(instance__vendor=cluster.vendor, instance__region=cluster.region)
                     .select_related("instance", "account"))
        known = set()
        for endpoint in endpoints.iterator(chunk_size=500):
            known.add(str(endpoint.pk))
            converged = endpoint.observed_generation == endpoint.generation and endpoint.pinned_revision
            if endpoint.intent == Intent.DELETE or not converged:
                live.pop(str(endpoint.pk), None)  # the convergence sweep owns these
                continue
            report.endpoints_checked += 1
            desired = {(o["kind"], o["metadata"]["name"]): stamped(o)
                       for o in render_endpoint(target_for(endpoint, cluster), shared)}
            actual = live.pop(str(endpoint.pk), {})
            if desired.keys() != actual.keys() or not all(up_to_date(o, actual[k]) for k, o in desired.items()):
                report.drifted.append(endpoint.pk)
                enqueue(endpoint.pk)
        for owner, objects in live.items():
            if owner in known:
                continue
            for (kind, name), obj in objects.items():
                try:
                    kube.delete(kind, obj["metadata"].get("namespace"), name)
                    report.orphans_deleted.append(f"{kind}/{name}")
                except KubeError as exc:
                    log.warning("drift.orphan_delete_failed object=%s/%s error=%s", kind, name, exc)
    log.info("drift.swept clusters=%s checked=%s drifted=%s orphans=%s", report.clusters,
             report.endpoints_checked, len(report.drifted), len(report.orphans_deleted))
    return report



