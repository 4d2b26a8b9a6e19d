"""The route records of the gateway's feed: which endpoint a host serves, where its Service is, its state.

A route depends on the endpoint and on the cluster serving its region, so it is published from here:
after every change an endpoint service commits (``endpoints.signals.endpoint_changed``, connected in
``deployments.apps``) and after every state the reconciler records. The writer is ``controlplane.feed``.
"""

import time

from django.db import transaction

from controlplane.feed import publication, record_write
from controlplane.names import host_id
from controlplane.records import route_record
from endpoints.models import ACTIVE_PHASES, Endpoint

from .models import Cluster

ROUTE_FIELDS = ("id", "name", "type", "state", "intent", "message", "image", "account_id", "account__slug",
                "account__kind", "account__user_id", "instance__vendor", "instance__region", "spec_generation",
                "rollout__generation", "rollout__phase", "rollout__weight", "rollout__sticky")
NO_CLUSTER = {"namespace_prefix": "", "service_url_template": None, "ingress_domain": "", "simulated": False}


def route_row(*, account_slug: str, name: str) -> dict | None:
    """The row ``controlplane.records.route_record`` needs, or None when the endpoint does not exist."""
    row = Endpoint.objects.filter(account__slug=account_slug, name=name).values(*ROUTE_FIELDS).first()
    if row is None:
        return None
    # The canary's share, while the spec desired is a canary that takes traffic (``endpoints.rollouts``).
    generation, phase = row.pop("spec_generation"), row.pop("rollout__phase")
    rollout = {k: row.pop(f"rollout__{k}") for k in ("generation", "weight", "sticky")}
    active = rollout["generation"] == generation and phase in ACTIVE_PHASES and rollout["weight"]
    row["canary"] = {"generation": rollout["generation"], "weight": rollout["weight"],
                     "sticky": rollout["sticky"]} if active else None
    cluster = (Cluster.objects.filter(vendor=row.pop("instance__vendor"), region=row.pop("instance__region"),
                                      enabled=True)
               .values("namespace_prefix", "service_url_template", "ingress_domain", "simulated").first())
    return {**{k.replace("__", "_"): v for k, v in row.items()}, **(cluster or NO_CLUSTER)}


@publication
def route_publish(*, account_slug: str, name: str, **_signal) -> None:
    """Publish the endpoint's current route (or its absence, once deleted). Idempotent."""
    version = time.time_ns()
    row = route_row(account_slug=account_slug, name=name)
    record_write("route", host_id(account_slug, name), version, route_record(row) if row else None)


def route_publish_on_commit(endpoint: Endpoint) -> None:
    """After the current transaction commits, publish ``endpoint``'s route (or its absence)."""
    account_slug, name = endpoint.account.slug, endpoint.name
    transaction.on_commit(lambda: route_publish(account_slug=account_slug, name=name))
