"""Idempotent apply and prune: write only what differs, delete what is no longer desired.

Each desired object carries a spec-hash annotation of its rendered form. An object whose live hash
matches is left alone, so a converged endpoint costs reads only. A Deployment keeps the live
``spec.replicas`` while both sides run, because that number belongs to the HPA.
"""

import logging
from dataclasses import dataclass, field

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


def apply_one(kube: Kube, desired: dict, live: dict | None, result: ApplyResult) -> dict:
    """Create, replace or leave one object; returns the live object."""
    desired = stamped(desired)
    label = f"{desired['kind']}/{desired['metadata']['name']}"
    if live is None:
        created = kube.create(desired)
        result.created.append(label)
        return created
    if live_hash(live) == live_hash(desired):
        return live
    body = {**desired, "metadata": {**desired["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
    if desired["kind"] == "Deployment":
        wanted = desired["spec"].get("replicas", 1)
        current = live.get("spec", {}).get("replicas", 0)
        if wanted > 0 and current > 0:
            body["spec"] = {**desired["spec"], "replicas": current}  # the HPA's number
    replaced = kube.replace(body)
    result.replaced.append(label)
    return replaced


def apply_all(kube: Kube, desired: list[dict], live_by_kind: dict[str, dict[str, dict]],
              prunable_kinds: tuple[str, ...]) -> ApplyResult:
    """Apply ``desired`` against ``live_by_kind`` (kind -> name -> live object, as listed by label), then
    delete live objects of ``prunable_kinds`` that are not desired. Raises KubeError."""
    result = ApplyResult()
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
    for obj in desired:
        kind, name = obj["kind"], obj["metadata"]["name"]
        result.live[(kind, name)] = apply_one(kube, obj, live_by_kind.get(kind, {}).get(name), result)
    for kind in prunable_kinds:
        for name, live in live_by_kind.get(kind, {}).items():
            if (kind, name) not in wanted:
                kube.delete(kind, live["metadata"].get("namespace"), name)
                result.deleted.append(f"{kind}/{name}")
    return result
