"""Endpoint lifecycle writes: create, update, rollback, pause, resume, scale to zero, delete.

Each service is one transaction that locks the account row (admission and name checks serialise per
account) and then the endpoint row, validates, writes the spec, bumps ``generation`` when the spec
changed, appends an event, and after commit sends ``endpoints.signals.endpoint_changed`` (the layer
above publishes the endpoint's gateway route on it) and queues a reconcile.
None of them calls Kubernetes, AWS or the Hub.

The state an intent implies is visible at once (pause -> paused, resume -> pending, scale to zero ->
scaledToZero, delete -> deleting), as the HF API answers; the reconciler derives every other state.
"""

import functools
import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from controlplane.encryption import decrypt_json, encrypt_json
from controlplane.errorcodes import Code
from controlplane.errors import Conflict, InvalidSpec
from controlplane.images import MANAGED_TASKS, MANAGED_VARIANTS, image_registry
from controlplane.locks import account_lock
from controlplane.models import Account
from controlplane.queue import RECONCILE_ENDPOINT, enqueue
from controlplane.services import audit_record
from controlplane.webhooks import events as webhook_events
from quotas.errors import QuotaExceeded
from quotas.selectors import instance_get

from .errors import EndpointNotFound, StateConflict
from .locks import endpoint_try_lock_for_transaction
from .models import Endpoint, EndpointEvent, Intent, Rollout, State, rollout_of
from .quota import quota_reserve
from .schedules import held_replica, schedule_record
from .serializers import EndpointSpecSerializer
from .signals import endpoint_changed
from .spec import MASK, deep_merge, spec_diff, stored_spec
from .spec_revisions import rollback_target, secrets_restorable

log = logging.getLogger(__name__)

RESPEC_FIELDS = ("model.repository", "model.revision")


def _reports_quota_refusal(service):
    """Wrap a service (outside its transaction) so an admission refusal is reported as ``quota.exceeded``.

    The refusal rolls the service's transaction back, webhook outbox rows included; so the event is
    written afterwards, in a transaction of its own. A failure to write it never hides the refusal.
    """

    @functools.wraps(service)
    def wrapper(*, account: Account, **kwargs):
        try:
            return service(account=account, **kwargs)
        except QuotaExceeded as exc:
            spec = kwargs.get("spec") if isinstance(kwargs.get("spec"), dict) else {}
            name = kwargs.get("name") or spec.get("name")
            data = {"namespace": account.slug, "name": name if isinstance(name, str) else None,
                    "operation": service.__name__.removeprefix("endpoint_"), "message": exc.message,
                    **{key: exc.extra.get(key) for key in ("accelerator", "limit", "usage", "need")}}
            try:
                with transaction.atomic():
                    webhook_events.emit(account=account, event_type=webhook_events.QUOTA_EXCEEDED, data=data)
            except Exception:  # the refusal is what the caller must see
                log.exception("webhook.quota_exceeded_not_recorded account=%s", account.slug)
            raise

    return wrapper


def _changed_on_commit(endpoint: Endpoint, *, reconcile: bool = True) -> None:
    """One callback after commit: say the endpoint changed (its gateway route is published on that), then
    queue a reconcile (a broker outage is logged: the beat sweep finds unconverged rows)."""
    account_slug, name, endpoint_id = endpoint.account.slug, endpoint.name, endpoint.pk

    def changed() -> None:
        endpoint_changed.send(sender=Endpoint, account_slug=account_slug, name=name, endpoint_id=endpoint_id)
        if reconcile:
            enqueue(RECONCILE_ENDPOINT, endpoint_id)

    transaction.on_commit(changed)


def event_record(*, endpoint: Endpoint, kind: str, actor: AbstractBaseUser | None, message: str = "",
                 diff: dict | None = None, from_state: str = "", to_state: str = "") -> EndpointEvent:
    """Append one event. ``diff`` must hold no secret values (secrets are diffed by key). A change of state
    is also logged, one readable line (what ``make run`` shows of an endpoint's lifecycle)."""
    if to_state and to_state != from_state:
        log.info("endpoint %s/%s: %s -> %s (%s)", endpoint.account.slug, endpoint.name, from_state or "new",
                 to_state, message)
    event = EndpointEvent.objects.create(
        endpoint=endpoint, kind=kind, actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=getattr(actor, "username", None) or "system", message=message[:1024], diff=diff or {},
        from_state=from_state, to_state=to_state, generation=endpoint.generation,
    )
    _webhooks_emit(endpoint, event)
    return event


# The webhook event each kind of endpoint event also is (besides endpoint.state_changed for a new state).
WEBHOOK_KINDS = {"create": webhook_events.ENDPOINT_CREATED, "update": webhook_events.ENDPOINT_UPDATED}


def endpoint_webhook_data(endpoint: Endpoint, **extra) -> dict:
    """What a webhook says of an endpoint: names, state and message, never spec values (no env, no secrets)."""
    return {"namespace": endpoint.account.slug, "name": endpoint.name, "state": endpoint.state,
            "message": endpoint.message, "url": endpoint.url, "generation": endpoint.generation, **extra}


def _webhooks_emit(endpoint: Endpoint, event: EndpointEvent) -> None:
    """The event's webhooks, in its transaction (so a rolled-back change sends nothing)."""
    items = []
    actor = {"actor": event.actor_name, "eventId": event.pk}
    if event.kind in WEBHOOK_KINDS:
        # Changed field names only: values may be long, and the secrets' are never anywhere in an event.
        changed = {"changed": sorted(event.diff)} if event.kind == "update" else {}
        items.append((WEBHOOK_KINDS[event.kind], endpoint_webhook_data(endpoint, **changed, **actor)))
    if event.to_state and event.to_state != event.from_state:
        # The reconciler's in-memory endpoint may predate the status it just wrote: the event's own state
        # and message are the truth here, and the url is left to endpoint.updated / the API.
        data = endpoint_webhook_data(endpoint, state=event.to_state, fromState=event.from_state or None,
                                     toState=event.to_state, message=event.message, **actor)
        data.pop("url")
        items.append((webhook_events.ENDPOINT_STATE_CHANGED, data))
    webhook_events.emit_many(account=endpoint.account_id, events=items, at=event.created_at)


def endpoint_deleted_emit(endpoint: Endpoint) -> None:
    """``endpoint.deleted``: call in the transaction that removes the row (the service's immediate delete, the
    reconciler's teardown)."""
    webhook_events.emit(account=endpoint.account_id, event_type=webhook_events.ENDPOINT_DELETED,
                        data=endpoint_webhook_data(endpoint, state="deleted", message="Endpoint deleted"))


# ---------------------------------------------------------------- spec validation
def _validate(spec: dict) -> dict:
    serializer = EndpointSpecSerializer(data=spec)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _check_task(model: dict) -> None:
    (variant, _), = model["image"].items()
    task = model.get("task")
    if variant in MANAGED_VARIANTS and task is not None and task not in MANAGED_TASKS:
        message = (f"The managed image cannot serve task '{task}'; deploy it with a custom image "
                   f"(model.image = {{\"custom\": {{\"url\": ...}}}})")
        raise InvalidSpec(message, code=Code.UNSUPPORTED_TASK, fields={"model.task": [message]})


def _split_registry_password(image: dict, old_password: str | None,
                              old_image: dict | None = None) -> tuple[dict, str | None]:
    """Take the registry password out of the image (it is stored encrypted); the mask keeps the old one,
    unless the image now pulls from another registry than ``old_image`` did (the stored password was
    given for that registry only: InvalidSpec naming the field)."""
    (variant, body), = image.items()
    credentials = body.get("credentials")
    if not credentials:
        return image, None
    password = credentials.get("password")
    if password == MASK:
        (_old_variant, old_body), = (old_image or {"": {}}).items()
        if old_password and image_registry(body.get("url") or "") != image_registry(old_body.get("url") or ""):
            raise InvalidSpec("The image now pulls from another registry: give its password again",
                              fields={f"model.image.{variant}.credentials.password": ["required for a new registry"]})
        password = old_password
    # The stored image keeps the mask in the password's place, so it renders and diffs without the secret.
    masked = {"username": credentials["username"], **({"password": MASK} if password else {})}
    return {variant: {**body, "credentials": masked}}, password


def _assign(endpoint: Endpoint, spec: dict, instance, secrets: dict, registry_password: str | None) -> None:
    scaling, model = spec["compute"]["scaling"], spec["model"]
    measure = scaling.get("measure")
    metric = next(iter(measure)) if measure else scaling.get("metric")
    endpoint.type = spec["type"]
    endpoint.instance = instance
    endpoint.min_replica, endpoint.max_replica = scaling["minReplica"], scaling["maxReplica"]
    endpoint.scale_to_zero_timeout = scaling.get("scaleToZeroTimeout")
    endpoint.scaling_metric = metric or ""
    endpoint.scaling_threshold = measure[metric] if measure else None
    endpoint.scaling_schedules = [dict(schedule) for schedule in scaling.get("schedules") or []]
    endpoint.held_replica = held_replica(scaling)
    schedule_record(endpoint, timezone.now())  # the window in force from this write on; beat keeps it current
    endpoint.repository, endpoint.revision = model["repository"], model.get("revision")
    endpoint.framework, endpoint.task = model["framework"], model.get("task")
    endpoint.image = model["image"]
    endpoint.command, endpoint.args = model.get("command"), model.get("args")
    endpoint.env = model.get("env") or {}
    endpoint.secret_keys = sorted(secrets)
    endpoint.secrets_encrypted = encrypt_json({"secrets": secrets, "registryPassword": registry_password}
                                              if secrets or registry_password else None)
    endpoint.tags = spec.get("tags") or []
    endpoint.route = {k: v for k, v in (spec.get("route") or {}).items() if v is not None}
    endpoint.cache_http_responses = bool(spec.get("cacheHttpResponses"))
    endpoint.private_service = dict(spec["privateService"]) if spec.get("privateService") else None


def _secret_bundle(endpoint: Endpoint) -> dict:
    return decrypt_json(endpoint.secrets_encrypted, default={}) or {}


def endpoint_secrets(*, endpoint: Endpoint) -> tuple[dict, str | None]:
    """The decrypted ``model.secrets`` and registry password, for the renderer only."""
    bundle = _secret_bundle(endpoint)
    return bundle.get("secrets") or {}, bundle.get("registryPassword")


def _locked_endpoint(account: Account, name: str) -> Endpoint:
    """The endpoint row, locked after the account's row, with its instance, account and rollout (if any)."""
    account_lock(account=account)
    endpoint = (Endpoint.objects.select_for_update(of=("self",)).select_related("instance", "account", "rollout")
                .filter(account=account, name=name).first())
    if endpoint is None:
        raise EndpointNotFound()
    return endpoint


def _refuse_during_rollout(endpoint: Endpoint, operation: str) -> None:
    """A canary under way owns the spec: nothing but delete, promote and abort changes the endpoint meanwhile."""
    rollout = rollout_of(endpoint)
    if rollout is not None and rollout.active:
        raise Conflict(f"A canary rollout of revision {rollout.generation} is under way ({rollout.phase}): promote "
                       f"or abort it before you {operation}", code=Code.ROLLOUT_IN_PROGRESS)


def _retire_stable_secrets(endpoint: Endpoint) -> None:
    """A new spec replaces a finished rollout's: the stable's secret values it kept are not needed any more."""
    rollout = rollout_of(endpoint)
    if rollout is not None and rollout.stable_secrets_encrypted:
        Rollout.objects.filter(pk=rollout.pk).update(stable_secrets_encrypted="")
        rollout.stable_secrets_encrypted = ""


def _check_canary(endpoint: Endpoint, old_instance, old_type: str, diff: dict) -> None:
    """A canary runs the new spec beside the serving one, behind our gateway, on the same compute: refuse
    (naming ``rollout.strategy``) what cannot be split that way, 409 when nothing serves to compare with."""
    field = "rollout.strategy"
    if "private" in (endpoint.type, old_type):
        message = "A private endpoint is not served by the gateway, which splits a canary's traffic: update it in place"
        raise InvalidSpec(message, fields={field: [message]})
    if endpoint.instance.pk != old_instance.pk:
        message = "A canary keeps the compute and provider of the serving version: change those with a rolling update"
        raise InvalidSpec(message, fields={field: [message]})
    if "privateService" in diff:
        raise InvalidSpec("A canary cannot change privateService", fields={field: ["privateService changes"]})
    if (endpoint.intent != Intent.RUN or endpoint.state != State.RUNNING
            or endpoint.serving_generation != endpoint.spec_generation):
        raise StateConflict(f"A canary starts from a running endpoint whose spec serves; {endpoint.name} is "
                            f"{endpoint.state}" + (" (roll back or update it first)"
                                                   if endpoint.state == State.UPDATE_FAILED else ""))


def _touch(endpoint: Endpoint, actor, *, spec_changed: bool) -> None:
    endpoint.updated_at, endpoint.updated_by = timezone.now(), actor if actor and actor.is_authenticated else None
    if spec_changed:
        endpoint.generation += 1


def _new_spec(endpoint: Endpoint, *, rollback_of: int | None = None) -> None:
    """After ``_touch``: this generation changes the spec itself, so it becomes the next spec revision (an
    intent change keeps the revision); a rollback says which revision it restores and which it replaces."""
    endpoint.rolled_back_from = endpoint.spec_generation if rollback_of is not None else None
    endpoint.rollback_of = rollback_of
    endpoint.spec_generation = endpoint.generation


# ---------------------------------------------------------------- services
@_reports_quota_refusal
@transaction.atomic
def endpoint_create(*, account: Account, spec: dict, actor: AbstractBaseUser | None) -> Endpoint:
    """Create an endpoint from a raw create body.

    Raises InvalidSpec (400, field named) for bad shape, an unknown or unavailable instance or a task the
    managed image cannot serve; Conflict (409) for a taken name or the per-account endpoint limit;
    QuotaExceeded (403). Writes nothing on error. Enqueues a reconcile on commit.
    """
    spec = _validate(spec)
    _check_task(spec["model"])
    compute, provider = spec["compute"], spec["provider"]
    instance = instance_get(vendor=provider["vendor"], region=provider["region"], accelerator=compute["accelerator"],
                            instance_type=compute["instanceType"], instance_size=compute["instanceSize"])
    account_lock(account=account)
    held = Endpoint.objects.filter(account=account).aggregate(count=Count("pk"),
                                                              taken=Count("pk", filter=Q(name=spec["name"])))
    if held["taken"]:
        raise Conflict("An endpoint with the same name already exists", code=Code.NAME_TAKEN,
                       fields={"name": [f"'{spec['name']}' is taken in '{account.slug}'"]})
    if held["count"] >= settings.MAX_ENDPOINTS_PER_ACCOUNT:
        raise Conflict(f"'{account.slug}' already has the maximum of {settings.MAX_ENDPOINTS_PER_ACCOUNT} endpoints",
                       code=Code.ENDPOINT_LIMIT)
    quota_reserve(account=account, instance=instance, max_replica=held_replica(compute["scaling"]))
    image, password = _split_registry_password(spec["model"]["image"], None)
    spec["model"]["image"] = image
    user = actor if actor is not None and actor.is_authenticated else None
    endpoint = Endpoint(account=account, name=spec["name"], created_by=user, updated_by=user)
    _assign(endpoint, spec, instance, spec["model"].get("secrets") or {}, password)
    try:
        endpoint.save()  # no savepoint: a failed insert fails the whole transaction, as it should
    except IntegrityError as exc:  # the account lock makes this unreachable; kept as a backstop
        raise Conflict("An endpoint with the same name already exists", code=Code.NAME_TAKEN) from exc
    Endpoint.rollout.related.set_cached_value(endpoint, None)  # a new endpoint has none: its body reads no row
    event_record(endpoint=endpoint, kind="create", actor=actor, message="Endpoint created",
                 diff={k: v for k, v in spec_diff({}, stored_spec(endpoint)).items() if v[1] not in (None, [], {})},
                 to_state=endpoint.state)
    _changed_on_commit(endpoint)
    return endpoint


@_reports_quota_refusal
@transaction.atomic
def endpoint_update(*, account: Account, name: str, patch: dict, actor: AbstractBaseUser | None,
                    rollout: dict | None = None) -> Endpoint:
    """Deep-merge ``patch`` into the stored spec and apply it.

    ``rollout`` (``rollout_serializers.RolloutSerializer``'s validated data, None: rolling): with strategy
    ``canary`` the new spec becomes a canary beside the serving revision (a ``Rollout`` row; the endpoint
    holds quota for both meanwhile), refused for private endpoints, a changed compute, or an endpoint whose
    spec does not serve (``_check_canary``). Raises Conflict ``rollout_in_progress`` while one is under way.

    ``{}`` or a patch that changes nothing writes nothing. A changed repository or revision is pinned
    again by the reconciler. Re-admits quota when the instance changes or the held replicas grow (the largest
    maxReplica of the base and the schedules) on an endpoint that holds quota. Raises as ``endpoint_create``,
    plus EndpointNotFound and StateConflict (deleting).
    """
    endpoint = _locked_endpoint(account, name)
    if endpoint.intent == Intent.DELETE:
        raise StateConflict("Endpoint is being deleted")
    _refuse_during_rollout(endpoint, "update it")
    old_spec, old_type, old_secrets_encrypted = stored_spec(endpoint), endpoint.type, endpoint.secrets_encrypted
    patch = {k: v for k, v in patch.items() if k not in ("name", "rollout")}  # renaming is not supported; the path names it
    merged = deep_merge(old_spec, patch)
    merged.setdefault("model", {})
    if isinstance(merged["model"], dict) and "secrets" not in merged["model"]:
        merged["model"]["secrets"] = {}
    spec = _validate(merged)
    _check_task(spec["model"])
    compute, provider = spec["compute"], spec["provider"]
    instance = instance_get(vendor=provider["vendor"], region=provider["region"], accelerator=compute["accelerator"],
                            instance_type=compute["instanceType"], instance_size=compute["instanceSize"])

    old_secrets, old_password = endpoint_secrets(endpoint=endpoint)
    patched_model = patch.get("model") if isinstance(patch.get("model"), dict) else {}
    if "secrets" in patched_model:
        secrets = {k: old_secrets.get(k, "") if v == MASK else v for k, v in spec["model"]["secrets"].items()}
    else:
        secrets = old_secrets
    image, password = _split_registry_password(spec["model"]["image"], old_password, endpoint.image)
    spec["model"]["image"] = image

    old_instance, old_held = endpoint.instance, endpoint.held_replica
    _assign(endpoint, spec, instance, secrets, password)  # in memory: saved only if something changed
    diff = spec_diff(old_spec, stored_spec(endpoint))
    if secrets != old_secrets:
        diff["model.secrets"] = [sorted(old_secrets), sorted(secrets)]  # keys only, never values
    if password != old_password:
        diff["model.image.credentials.password"] = ["(changed)", "(changed)"]
    if not diff:
        return endpoint

    canary = rollout is not None and rollout["strategy"] == "canary"
    canary_held = endpoint.held_replica
    if canary:
        _check_canary(endpoint, old_instance, old_type, diff)
        endpoint.held_replica = canary_held + old_held  # both versions run until the rollout ends
    holds_quota = endpoint.intent != Intent.PAUSE
    if holds_quota and (instance.pk != old_instance.pk or endpoint.held_replica > old_held
                        or instance.quota_units != old_instance.quota_units):
        quota_reserve(account=account, instance=instance, max_replica=endpoint.held_replica, endpoint_id=endpoint.pk)
    if any(field in diff for field in RESPEC_FIELDS):
        endpoint.pinned_revision = None
    from_state = endpoint.state
    if endpoint.intent == Intent.RUN:
        endpoint.state = State.UPDATING if endpoint.first_applied_at else State.PENDING
        endpoint.message = "Canary starting beside the serving version" if canary else "Endpoint waiting for the update"
    stable_generation = endpoint.serving_generation
    _touch(endpoint, actor, spec_changed=True)
    _new_spec(endpoint)
    endpoint.save()
    if canary:
        steps = ", ".join(f"{s['weight']}%" for s in rollout["steps"])
        Rollout.objects.update_or_create(endpoint=endpoint, defaults={
            "generation": endpoint.spec_generation, "stable_generation": stable_generation,
            "stable_held": old_held, "canary_held": canary_held, "stable_secrets_encrypted": old_secrets_encrypted,
            "steps": rollout["steps"], "gates": rollout["gates"], "sticky": rollout["sticky"],
            "phase": "starting", "step": 0, "weight": 0, "step_started_at": None, "baseline": {}, "readings": {},
            "message": endpoint.message, "started_by_name": getattr(actor, "username", None) or "system",
            "started_at": endpoint.updated_at, "finished_at": None})
    else:
        _retire_stable_secrets(endpoint)
    event_record(endpoint=endpoint, kind="update", actor=actor, diff=diff, from_state=from_state,
                 to_state=endpoint.state,
                 message=f"Endpoint updated: canary of revision {endpoint.spec_generation} (steps {steps})"
                 if canary else "Endpoint updated")
    _changed_on_commit(endpoint)
    return endpoint


@transaction.atomic
def endpoint_rollback(*, account: Account, name: str, revision: int | None,
                      actor: AbstractBaseUser | None) -> Endpoint:
    """Return the endpoint to the spec of spec revision ``revision`` (None: the newest one that served
    before the spec now desired) and to the model commit it ran, as a new generation.

    The spec is replaced whole by the revision's (validated as a create is) and ``pinned_revision`` set to
    its sha, so the reconciler renders exactly that commit and never resolves the revision again. Secret
    values are the revision's if the endpoint still stores them (``spec_revisions.secrets_restorable``).
    Quota is re-admitted as by an update. A revision whose spec, secrets and sha are the ones desired
    already changes nothing. Event ``rollback`` with the diff (secrets by key).

    Raises EndpointNotFound, RevisionNotFound (404); StateConflict (409, deleting); Conflict (409):
    revision_not_served, no_previous_revision, rollback_secrets_missing; QuotaExceeded (403);
    InvalidSpec when the revision's compute can no longer be ordered. Writes nothing on error.
    """
    endpoint = _locked_endpoint(account, name)
    if endpoint.intent == Intent.DELETE:
        raise StateConflict("Endpoint is being deleted")
    _refuse_during_rollout(endpoint, "roll it back")
    target = rollback_target(endpoint=endpoint, generation=revision)
    old_secrets, old_password = endpoint_secrets(endpoint=endpoint)
    kept, kept_password = old_secrets, old_password
    rollout = rollout_of(endpoint)
    if rollout is not None and rollout.stable_secrets_encrypted and target.generation == rollout.stable_generation:
        # back to the stable of a canary that changed secret values: the rollout kept the stable's
        bundle = decrypt_json(rollout.stable_secrets_encrypted, default={}) or {}
        kept, kept_password = bundle.get("secrets") or {}, bundle.get("registryPassword")
    secrets, password = secrets_restorable(endpoint=endpoint, revision=target, secrets=kept,
                                           registry_password=kept_password)
    old_spec, old_pinned = stored_spec(endpoint), endpoint.pinned_revision
    spec = _validate({**target.spec, "model": {**target.spec["model"], "secrets": secrets}})
    _check_task(spec["model"])
    compute, provider = spec["compute"], spec["provider"]
    instance = instance_get(vendor=provider["vendor"], region=provider["region"], accelerator=compute["accelerator"],
                            instance_type=compute["instanceType"], instance_size=compute["instanceSize"])
    # The revision's image keeps the mask where it had a password: the matched one (same registry) fills it.
    image, password = _split_registry_password(spec["model"]["image"], password, spec["model"]["image"])
    spec["model"]["image"] = image

    old_instance, old_held = endpoint.instance, endpoint.held_replica
    _assign(endpoint, spec, instance, secrets, password)
    endpoint.pinned_revision = target.pinned_revision or None
    diff = spec_diff(old_spec, stored_spec(endpoint))
    if secrets != old_secrets:
        diff["model.secrets"] = [sorted(old_secrets), sorted(secrets)]  # keys only, never values
    if password != old_password:
        diff["model.image.credentials.password"] = ["(changed)", "(changed)" if password else None]
    if endpoint.pinned_revision != old_pinned:
        diff["pinnedRevision"] = [old_pinned, endpoint.pinned_revision]
    if not diff:
        return endpoint

    if endpoint.intent != Intent.PAUSE and (instance.pk != old_instance.pk or endpoint.held_replica > old_held
                                            or instance.quota_units != old_instance.quota_units):
        quota_reserve(account=account, instance=instance, max_replica=endpoint.held_replica, endpoint_id=endpoint.pk)
    from_state = endpoint.state
    if endpoint.intent == Intent.RUN:
        endpoint.state = State.UPDATING if endpoint.first_applied_at else State.PENDING
        endpoint.message = f"Endpoint waiting for the rollback to revision {target.generation}"
    _touch(endpoint, actor, spec_changed=True)
    _new_spec(endpoint, rollback_of=target.generation)
    endpoint.save()
    _retire_stable_secrets(endpoint)
    event_record(endpoint=endpoint, kind="rollback", actor=actor, diff=diff, from_state=from_state,
                 to_state=endpoint.state,
                 message=f"Rolled back to revision {target.generation} (from revision {endpoint.rolled_back_from})")
    _changed_on_commit(endpoint)
    return endpoint


def _intent_change(endpoint: Endpoint, *, intent: str, state: str, message: str, kind: str, actor) -> Endpoint:
    from_state, from_intent = endpoint.state, endpoint.intent
    endpoint.intent, endpoint.state, endpoint.message = intent, state, message
    if intent == Intent.PAUSE:
        endpoint.url = None
    endpoint.ready_replica = 0 if intent in (Intent.PAUSE, Intent.SCALE_TO_ZERO) else endpoint.ready_replica
    _touch(endpoint, actor, spec_changed=True)
    endpoint.save()
    event_record(endpoint=endpoint, kind=kind, actor=actor, message=message,
                 diff={"intent": [from_intent, intent]}, from_state=from_state, to_state=state)
    _changed_on_commit(endpoint)
    return endpoint


@transaction.atomic
def endpoint_pause(*, account: Account, name: str, actor: AbstractBaseUser | None,
                   message: str = "Endpoint paused by the user") -> Endpoint:
    """Pause: replicas to 0, url cleared, quota freed at once. Pausing a paused endpoint changes nothing.
    ``message`` is the status message and the event's (the budget enforcer says why it paused)."""
    endpoint = _locked_endpoint(account, name)
    if endpoint.intent == Intent.DELETE:
        raise StateConflict("Endpoint is being deleted")
    if endpoint.intent == Intent.PAUSE:
        return endpoint
    _refuse_during_rollout(endpoint, "pause it")
    return _intent_change(endpoint, intent=Intent.PAUSE, state=State.PAUSED, message=message, kind="pause",
                          actor=actor)


@_reports_quota_refusal
@transaction.atomic
def endpoint_resume(*, account: Account, name: str, actor: AbstractBaseUser | None) -> Endpoint:
    """Resume a paused, scaled-to-zero or failed endpoint (re-admitting its quota).

    A running endpoint raises StateConflict(400) whose message contains "already running", which the
    ``huggingface_hub`` client relies on.
    """
    endpoint = _locked_endpoint(account, name)
    if endpoint.intent == Intent.DELETE:
        raise StateConflict("Endpoint is being deleted")
    if endpoint.intent == Intent.RUN and endpoint.state not in (State.FAILED, State.UPDATE_FAILED):
        raise StateConflict("Endpoint is already running", code=Code.ALREADY_RUNNING, status=400)
    quota_reserve(account=account, instance=endpoint.instance, max_replica=endpoint.held_replica,
                  endpoint_id=endpoint.pk)
    return _intent_change(endpoint, intent=Intent.RUN, state=State.PENDING, message="Endpoint resuming",
                          kind="resume", actor=actor)


@transaction.atomic
def endpoint_scale_to_zero(*, account: Account, name: str, actor: AbstractBaseUser | None) -> Endpoint:
    """Scale to zero now: no replicas, url kept, quota still held; the next request wakes it."""
    endpoint = _locked_endpoint(account, name)
    if endpoint.intent == Intent.DELETE:
        raise StateConflict("Endpoint is being deleted")
    if endpoint.intent == Intent.PAUSE:
        raise StateConflict("Endpoint is paused; resume it first", status=400)
    if endpoint.intent == Intent.SCALE_TO_ZERO:
        return endpoint
    _refuse_during_rollout(endpoint, "scale it to zero")
    return _intent_change(endpoint, intent=Intent.SCALE_TO_ZERO, state=State.SCALED_TO_ZERO,
                          message="Endpoint scaled to zero", kind="scaleToZero", actor=actor)


@transaction.atomic
def endpoint_wake(*, endpoint_id: int, message: str = "Endpoint waking up: a request arrived") -> Endpoint | None:
    """Wake a scaled-to-zero endpoint because a request reached the gateway, or a scaling window asks for
    replicas (``message`` says which; the system acts, no user).

    Intent back to run, state ``initializing``, generation bumped, reconcile enqueued on commit: the
    reconciler restores replicas (>= 1) and the HPA. No quota check: a scaled-to-zero endpoint still holds
    its quota. Idempotent: an endpoint that is not scaled to zero is returned unchanged; None if it is gone.
    """
    account = Account.objects.filter(endpoints__pk=endpoint_id).first()
    if account is None:
        return None
    account_lock(account=account)
    endpoint = (Endpoint.objects.select_for_update(of=("self",)).select_related("instance", "account")
                .filter(pk=endpoint_id).first())
    if endpoint is None or endpoint.intent != Intent.SCALE_TO_ZERO:
        return endpoint
    return _intent_change(endpoint, intent=Intent.RUN, state=State.INITIALIZING, message=message, kind="wake",
                          actor=None)


def _delete_audit(endpoint: Endpoint, actor, *, to_state: str | None) -> None:
    """An endpoint's events go with its row, so the account's audit log keeps who deleted it (to_state None:
    the row went at once)."""
    audit_record(actor=actor, action="endpoint.delete", account=endpoint.account, target=endpoint.name,
                 diff={"state": [endpoint.state, to_state]})


@transaction.atomic
def endpoint_delete(*, account: Account, name: str, actor: AbstractBaseUser | None) -> None:
    """Delete. An endpoint whose objects never reached a cluster goes at once (if no reconcile holds it);
    otherwise it turns ``deleting`` and the reconciler removes its objects and then the row (and its events).
    Repeating a delete of a deleting endpoint is a no-op."""
    endpoint = _locked_endpoint(account, name)
    if endpoint.intent == Intent.DELETE:
        return
    if endpoint.first_applied_at is None and endpoint_try_lock_for_transaction(endpoint.pk):
        _changed_on_commit(endpoint, reconcile=False)
        _delete_audit(endpoint, actor, to_state=None)
        endpoint_deleted_emit(endpoint)
        endpoint.delete()
        return
    _delete_audit(endpoint, actor, to_state=State.DELETING)
    _intent_change(endpoint, intent=Intent.DELETE, state=State.DELETING, message="Endpoint is being deleted",
                   kind="delete", actor=actor)


