"""Idempotent apply and prune: write only what differs, delete what is no longer desired.

Each desired object carries a spec-hash annotation of its rendered form. An object is left alone when it is
``up_to_date``: its live hash matches *and* every field we render still has the value we rendered (fields the
API server or controllers add are ignored), so a converged endpoint costs reads only and a hand edit that
kept our annotation is still repaired. A Deployment keeps a live ``spec.replicas`` above the rendered
minimum, because that number belongs to the HPA.
"""

import logging
from dataclasses import dataclass, field

from kubernetes.utils import parse_quantity

from .kube import Kube
from .names import ANNOTATION_HASH
from .render import digest

log = logging.getLogger(__name__)


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    live: dict[tuple[str, str], dict] = field(default_factory=dict)  # (kind, name) -> object after apply

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.replaced) + len(self.deleted)


def stamped(obj: dict) -> dict:
    """``obj`` with its spec-hash annotation (the hash of the object without it)."""
    metadata = obj["metadata"]
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != ANNOTATION_HASH}
    bare = {**obj, "metadata": {**metadata, "annotations": annotations}}
    return {**obj, "metadata": {**metadata, "annotations": {**annotations, ANNOTATION_HASH: digest(bare)}}}


def live_hash(obj: dict | None) -> str | None:
    return ((obj or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_HASH)


QUANTITY_MAPS = ("requests", "limits", "hard")  # maps of resource name -> quantity (containers, ResourceQuota)


def _difference(live, want, path: str = "", quantities: bool = False) -> str | None:
    """The first field of ``want`` that ``live`` lacks or holds another value for (lists: same length, item by
    item), as a dotted path; None when ``live`` contains all of ``want``. Values of ``QUANTITY_MAPS`` compare
    as quantities: the API server stores them in canonical form (4096Mi comes back as 4Gi); an empty map or
    list matches an absent field (the API server omits empty ones)."""
    if live is None and want in ({}, []):
        return None
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return path or "."
        of_quantities = path.rsplit(".", 1)[-1] in QUANTITY_MAPS
        for key, value in want.items():
            found = _difference(live.get(key), value, f"{path}.{key}" if path else key, of_quantities)
            if found:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return path
        for i, (a, b) in enumerate(zip(live, want, strict=True)):
            found = _difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if live == want or (quantities and _same_quantity(live, want)):
        return None
    return path


def _same_quantity(a, b) -> bool:
    try:
        return parse_quantity(a) == parse_quantity(b)
    except (TypeError, ValueError):
        return False


def _with_live_replicas(desired: dict, live: dict) -> dict:
    """A running Deployment keeps the live replica count, which belongs to the HPA, unless it is below the
    rendered count (the minimum): a raised minimum takes effect in this rollout, not at the HPA's next sync."""
    if desired["kind"] != "Deployment":
        return desired
    wanted = desired["spec"].get("replicas", 1)
    current = live.get("spec", {}).get("replicas", 0)
    if wanted > 0 and current > wanted:
        return {**desired, "spec": {**desired["spec"], "replicas": current}}
    return desired


def stale_field(desired: dict, live: dict | None) -> str | None:
    """Why ``live`` is not what ``desired`` (stamped) renders: "absent", "spec hash", or the first rendered
    field whose live value differs (fields the API server or controllers add are ignored); None when it is."""
    if live is None:
        return "absent"
    if live_hash(live) != live_hash(desired):
        return "spec hash"
    # Items of a LIST carry no kind/apiVersion (the list does): compare the object's own fields.
    body = {k: v for k, v in _with_live_replicas(desired, live).items() if k not in ("kind", "apiVersion")}
    return _difference(live, body)


def up_to_date(desired: dict, live: dict | None) -> bool:
    """``live`` is what ``desired`` (stamped) renders: same spec hash and every rendered field unchanged."""
    return stale_field(desired, live) is None


def apply_one(kube: Kube, desired: dict, live: dict | None, result: ApplyResult) -> dict:
    """Create, replace or leave one object; returns the live object."""
    desired = stamped(desired)
    label = f"{desired['kind']}/{desired['metadata']['name']}"
    if live is None:
        created = kube.create(desired)
        result.created.append(label)
        return created
    stale = stale_field(desired, live)
    if stale is None:
        return live
    log.info("apply.replace %s (%s differs)", label, stale)
    body = _with_live_replicas(desired, live)
    body = {**body, "metadata": {**body["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
    replaced = kube.replace(body)
    result.replaced.append(label)
    return replaced


def apply_all(kube: Kube, desired: list[dict], live_by_kind: dict[str, dict[str, dict]],
              prunable_kinds: tuple[str, ...]) -> ApplyResult:
    """Delete live objects of ``prunable_kinds`` that are not desired, then apply ``desired`` against
    ``live_by_kind`` (kind -> name -> live object, as listed by label). Pruning first: a paused or zeroed
    endpoint's HPA is gone before its Deployment goes to zero replicas, so it cannot scale it back up in
    between. Raises KubeError."""
    result = ApplyResult()
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
    for kind in prunable_kinds:
        for name, live in live_by_kind.get(kind, {}).items():
            if (kind, name) not in wanted:
                kube.delete(kind, live["metadata"].get("namespace"), name)
                result.deleted.append(f"{kind}/{name}")
    for obj in desired:
        kind, name = obj["kind"], obj["metadata"]["name"]
        result.live[(kind, name)] = apply_one(kube, obj, live_by_kind.get(kind, {}).get(name), result)
    return result
