"""The endpoint spec in its wire form: deep merge for updates, rendering, and field diffs.

A stored Endpoint renders to the HF v2 object with secret values masked. An update body
is deep-merged into the stored spec: objects merge key by key, while the keys in
``REPLACED_WHOLE`` are replaced as a unit.
"""

from copy import deepcopy

from controlplane.images import image_health_route
from controlplane.wire import iso_z

from .models import Endpoint, rollout_of
from .scaling import scaling_target
from .schedules import scheduled_bounds

# What the API shows in place of a secret value, and what a client sends back to keep the stored one.
MASK = "********"

REPLACED_WHOLE = frozenset({
    "model.image", "model.command", "model.args", "model.env", "model.secrets", "tags",
    "compute.scaling.measure", "compute.scaling.schedules", "privateService",
})


def deep_merge(base: dict, patch: dict, _path: str = "") -> dict:
    """``base`` updated with ``patch``: nested objects merge, ``REPLACED_WHOLE`` paths and non-objects replace.

    Neither argument is modified. ``{}`` leaves ``base`` unchanged.
    """
    merged = deepcopy(base)
    for key, value in patch.items():
        path = f"{_path}.{key}" if _path else key
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and path not in REPLACED_WHOLE:
            merged[key] = deep_merge(merged[key], value, path)
        else:
            merged[key] = deepcopy(value)
    return merged


def scaling_measure(endpoint: Endpoint) -> tuple[str, float]:
    return scaling_target(endpoint.scaling_metric, endpoint.scaling_threshold)


def json_copy(value):
    """A copy of a JSON value (dicts, lists, scalars) sharing nothing mutable with it: what ``deepcopy``
    gives for these, at a fraction of its cost (no memo), which matters when a list renders thousands."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value


def public_image(image: dict) -> dict:
    """The image with any registry password masked."""
    image = json_copy(image)
    for body in image.values():
        credentials = body.get("credentials") if isinstance(body, dict) else None
        if credentials and "password" in credentials:
            credentials["password"] = MASK
    return image


def stored_spec(endpoint: Endpoint) -> dict:
    """The spec as the client would send it, without secret values: the base for a deep merge."""
    metric, threshold = scaling_measure(endpoint)
    instance = endpoint.instance
    return {
        "name": endpoint.name,
        "type": endpoint.type,
        "provider": {"vendor": instance.vendor, "region": instance.region},
        "compute": {
            "accelerator": instance.accelerator,
            "instanceType": instance.instance_type,
            "instanceSize": instance.instance_size,
            "scaling": {
                "minReplica": endpoint.min_replica,
                "maxReplica": endpoint.max_replica,
                "scaleToZeroTimeout": endpoint.scale_to_zero_timeout,
                "measure": {metric: endpoint.scaling_threshold} if endpoint.scaling_metric else None,
                "schedules": json_copy(endpoint.scaling_schedules or []),
            },
        },
        "model": {
            "repository": endpoint.repository,
            "revision": endpoint.revision,
            "framework": endpoint.framework,
            "task": endpoint.task,
            "image": json_copy(endpoint.image),
            "env": dict(endpoint.env),
            "command": json_copy(endpoint.command),
            "args": json_copy(endpoint.args),
        },
        "tags": list(endpoint.tags),
        "route": dict(endpoint.route) or None,
        "cacheHttpResponses": endpoint.cache_http_responses,
        "privateService": endpoint.private_service,
    }


def spec_diff(old: dict, new: dict, _path: str = "") -> dict:
    """``{dotted.path: [old, new]}`` for every leaf that changed. Secret values never appear (callers pass
    specs without them; secret changes are recorded by key)."""
    diff: dict = {}
    for key in sorted(set(old) | set(new)):
        path = f"{_path}.{key}" if _path else key
        a, b = old.get(key), new.get(key)
        nested = path not in REPLACED_WHOLE and (isinstance(a, dict) or isinstance(b, dict))
        if nested and isinstance(a or {}, dict) and isinstance(b or {}, dict):
            diff.update(spec_diff(a or {}, b or {}, path))
        elif a != b:
            diff[path] = [a, b]
    return diff


def _account_ref(user) -> dict | None:
    return {"id": str(user.pk), "name": user.get_username()} if user else None


def scaling_status(endpoint: Endpoint) -> dict:
    """``status.scaling``: the schedule in force (index or null), the bounds applied now, and when that changes."""
    low, high = scheduled_bounds(endpoint)
    return {"activeSchedule": endpoint.schedule_active, "minReplica": low, "maxReplica": high,
            "nextChange": iso_z(endpoint.schedule_next_change)}


def rollout_status(endpoint: Endpoint) -> dict | None:
    """``status.rollout``: the canary of the spec now desired, None when that spec came without one."""
    rollout = rollout_of(endpoint)
    if rollout is None or rollout.generation != endpoint.spec_generation:
        return None
    readings = rollout.readings or None
    return {"strategy": "canary", "phase": rollout.phase, "step": rollout.step + 1, "steps": rollout.steps,
            "weights": {"stable": 100 - rollout.weight, "canary": rollout.weight}, "gates": rollout.gates,
            "sticky": rollout.sticky, "stableRevision": rollout.stable_generation,
            "canaryRevision": rollout.generation, "readings": readings, "message": rollout.message,
            "startedAt": iso_z(rollout.started_at), "stepStartedAt": iso_z(rollout.step_started_at),
            "finishedAt": iso_z(rollout.finished_at)}


def endpoint_body(endpoint: Endpoint) -> dict:
    """The HF v2 Endpoint object: every key of the HF wire format, ``Z`` timestamps, secret values masked;
    ``compute.scaling.schedules``, ``status.scaling`` and ``status.desiredRevision`` / ``servingRevision`` are
    ours (clients ignore keys they do not know)."""
    spec = stored_spec(endpoint)
    metric, threshold = scaling_measure(endpoint)
    spec["compute"]["id"] = endpoint.instance.compute_id
    spec["compute"]["scaling"]["measure"] = {metric: threshold}
    spec["compute"]["scaling"]["metric"] = metric
    spec["model"]["revision"] = endpoint.pinned_revision or endpoint.revision
    spec["model"]["image"] = public_image(spec["model"]["image"])
    spec["model"]["secrets"] = {key: MASK for key in endpoint.secret_keys}
    spec["route"] = {"domain": endpoint.route.get("domain"), "path": endpoint.route.get("path")}
    return {
        **spec,
        "accountId": None,
        "healthRoute": image_health_route(endpoint.image),
        "status": {
            "createdAt": iso_z(endpoint.created_at),
            "createdBy": _account_ref(endpoint.created_by),
            "updatedAt": iso_z(endpoint.updated_at),
            "updatedBy": _account_ref(endpoint.updated_by),
            "private": {"serviceName": endpoint.private_service_name} if endpoint.private_service_name else None,
            "state": endpoint.state,
            "message": endpoint.message,
            "readyReplica": endpoint.ready_replica,
            "targetReplica": endpoint.target_replica,
            "url": endpoint.url,
            "errorMessage": endpoint.message if endpoint.state in ("failed", "updateFailed") else None,
            "cost": cost_status(endpoint),
            "scaling": scaling_status(endpoint),
            # spec revisions (endpoints.spec_revisions): the one desired and the last one that reached running
            "desiredRevision": endpoint.spec_generation,
            "servingRevision": endpoint.serving_generation,
            "rollout": rollout_status(endpoint),
        },
    }


def cost_status(endpoint: Endpoint) -> dict:
    """This month's accrued cost (``month_cost``, as ``endpoints.selectors`` annotates it; 0 otherwise),
    the instance's price, and whether anything accrues now (only ready replicas cost), saying why not."""
    accruing = endpoint.ready_replica > 0
    note = None if accruing else {"paused": "Paused: no replica runs, nothing accrues",
                                  "scaledToZero": "Scaled to zero: no replica runs, nothing accrues"}.get(
        endpoint.state, "No replica is ready: nothing accrues")
    return {"monthToDate": float(getattr(endpoint, "month_cost", None) or 0), "currency": "USD",
            "pricePerHour": float(endpoint.instance.price_per_hour), "accruing": accruing, "note": note}

