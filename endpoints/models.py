"""The Endpoint resource (spec columns written by services, status columns by the reconciler) and its log."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.models import Account
from quotas.models import InstanceType


class State(models.TextChoices):
    PENDING = "pending", "pending"
    INITIALIZING = "initializing", "initializing"
    UPDATING = "updating", "updating"
    UPDATE_FAILED = "updateFailed", "update failed"
    RUNNING = "running", "running"
    PAUSED = "paused", "paused"
    SCALED_TO_ZERO = "scaledToZero", "scaled to zero"
    FAILED = "failed", "failed"
    DELETING = "deleting", "deleting"


class Intent(models.TextChoices):
    """What the user asked for; the reconciler derives ``state`` from it and from the cluster."""

    RUN = "run", "run"
    PAUSE = "pause", "pause"
    SCALE_TO_ZERO = "scale_to_zero", "scale to zero"
    DELETE = "delete", "delete"


class EndpointType(models.TextChoices):
    PUBLIC = "public", "public"
    PROTECTED = "protected", "protected"
    AUTHENTICATED = "authenticated", "authenticated"
    PRIVATE = "private", "private"


class Endpoint(models.Model):
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="endpoints")
    name = models.CharField(max_length=32)

    # ---- spec (written only by endpoints.services; every change bumps `generation`)
    type = models.CharField(max_length=16, choices=EndpointType.choices, default=EndpointType.AUTHENTICATED)
    instance = models.ForeignKey(InstanceType, on_delete=models.PROTECT, related_name="endpoints")
    min_replica = models.PositiveIntegerField(default=1)
    max_replica = models.PositiveIntegerField(default=1)
    scale_to_zero_timeout = models.PositiveIntegerField(null=True, blank=True, help_text="minutes")
    scaling_metric = models.CharField(max_length=32, blank=True, help_text="hardwareUsage | pendingRequests")
    scaling_threshold = models.FloatField(null=True, blank=True)
    scaling_schedules = models.JSONField(default=list, blank=True, help_text="compute.scaling.schedules, as sent")
    # What the endpoint holds against its quota: the largest maxReplica of the base and of every schedule
    # (endpoints.schedules.held_replica), kept as a column so quota sums stay one SQL aggregate.
    held_replica = models.PositiveIntegerField(default=1)
    repository = models.CharField(max_length=256)
    revision = models.CharField(max_length=256, null=True, blank=True, help_text="As requested (null = default)")
    framework = models.CharField(max_length=32)
    task = models.CharField(max_length=64, null=True, blank=True)
    image = models.JSONField(default=dict, help_text="One-key union: {variant: {...}}; credentials encrypted")
    command = models.JSONField(null=True, blank=True)
    args = models.JSONField(null=True, blank=True)
    env = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", help_text="Fernet token of the JSON secrets")
    secret_keys = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True)
    route = models.JSONField(default=dict, blank=True)
    cache_http_responses = models.BooleanField(default=False)
    private_service = models.JSONField(null=True, blank=True)
    intent = models.CharField(max_length=16, choices=Intent.choices, default=Intent.RUN)
    generation = models.PositiveBigIntegerField(default=1)
    # Spec revisions (endpoints.spec_revisions): the generation of the last change of the spec itself (an
    # intent change -- pause, resume, scale to zero, wake -- bumps ``generation`` only), i.e. the number of
    # the EndpointRevision this spec becomes once it reaches a cluster; and, when that change was a rollback,
    # the revision it restores and the one it replaces (copied onto the new revision by the reconciler).
    spec_generation = models.PositiveBigIntegerField(default=1)
    rollback_of = models.PositiveBigIntegerField(null=True, blank=True)
    rolled_back_from = models.PositiveBigIntegerField(null=True, blank=True)

    # ---- status (written by the reconciler; services set the state an intent implies at once)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    message = models.CharField(max_length=1024, default="Endpoint waiting to be scheduled")
    url = models.CharField(max_length=512, null=True, blank=True)
    pinned_revision = models.CharField(max_length=40, null=True, blank=True, help_text="Commit sha the pods run")
    ready_replica = models.PositiveIntegerField(default=0)
    target_replica = models.PositiveIntegerField(default=0)
    observed_generation = models.PositiveBigIntegerField(default=0)
    # The spec revision that last reached running (kept while an update fails or the endpoint is paused).
    serving_generation = models.PositiveBigIntegerField(null=True, blank=True)
    private_service_name = models.CharField(max_length=256, null=True, blank=True)
    first_applied_at = models.DateTimeField(null=True, blank=True, help_text="When objects first reached a cluster")
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    # The scaling window in force (written by the spec services and by beat, endpoints.schedules): the index of
    # the schedule whose bounds apply (null: the base ones) and when that changes next (null: not foreseen).
    schedule_active = models.PositiveSmallIntegerField(null=True, blank=True)
    schedule_next_change = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["account__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="endpoint_name_unique"),
            models.CheckConstraint(condition=models.Q(min_replica__lte=models.F("max_replica")),
                                   name="endpoint_replicas_ordered"),
            models.CheckConstraint(condition=models.Q(held_replica__gte=models.F("max_replica")),
                                   name="endpoint_held_covers_max"),
        ]
        indexes = [models.Index(fields=["observed_generation", "generation"], name="endpoint_convergence"),
                   # beat's minute look at scheduled endpoints reads these rows only
                   models.Index(fields=["id"], condition=~models.Q(scaling_schedules=[]), name="endpoint_scheduled")]

    def __str__(self) -> str:
        return f"{self.account.slug}/{self.name}"


class EndpointEvent(models.Model):
    """Append-only lifecycle and audit log of one endpoint; deleted with it."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, help_text="create, update, pause, resume, scaleToZero, delete, state")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_name = models.CharField(max_length=150, default="system")
    message = models.CharField(max_length=1024, blank=True)
    diff = models.JSONField(default=dict, blank=True, help_text="field -> [old, new]; secrets by key only")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16, blank=True)
    generation = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind} {self.message}"


# The inference catalog's models live in their own module; importing them here makes them this app's.
from .catalog_models import CatalogModel, CatalogRecipe  # noqa: E402, F401


class ReplicaChange(models.Model):
    """One change of an endpoint's observed replica counts, as the reconciler recorded it: the counts hold
    from ``at`` until the endpoint's next row. Change-only, so a steady endpoint writes nothing."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="replica_changes")
    at = models.DateTimeField(default=timezone.now)
    ready = models.PositiveIntegerField()
    target = models.PositiveIntegerField()

    class Meta:
        ordering = ["endpoint", "at", "id"]
        indexes = [models.Index(fields=["endpoint", "at"], name="replica_change_endpoint_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.ready}/{self.target}"


class CostHour(models.Model):
    """What one endpoint cost in one clock hour (UTC): replica-seconds it ran (ready replicas, as observed)
    times its instance's price. Kept by account and endpoint name, so deleting the endpoint keeps its
    cost; rows only ever grow, by ``endpoints.costs.costs_accrue``."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="cost_hours")
    endpoint_name = models.CharField(max_length=32)
    hour = models.DateTimeField(help_text="The hour's start, UTC")
    replica_seconds = models.FloatField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0, help_text="USD")

    class Meta:
        ordering = ["account", "hour", "endpoint_name"]
        constraints = [models.UniqueConstraint(fields=["account", "endpoint_name", "hour"], name="cost_hour_unique")]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.endpoint_name} {self.hour:%Y-%m-%d %H}:00 {self.cost}"


class CostCursor(models.Model):
    """How far an endpoint's cost has been accrued, and the ready count in force at that moment."""

    endpoint = models.OneToOneField(Endpoint, on_delete=models.CASCADE, primary_key=True, related_name="cost_cursor")
    accrued_until = models.DateTimeField()
    ready = models.PositiveIntegerField(default=0)


class RevisionOutcome(models.TextChoices):
    APPLIED = "applied", "applied"  # reached a cluster, not (yet) running
    SERVING = "serving", "serving"
    SUPERSEDED = "superseded", "superseded"
    FAILED = "failed", "failed"
    ROLLED_BACK = "rolledBack", "rolled back"


class EndpointRevision(models.Model):
    """One spec generation of an endpoint that reached a cluster, as it was applied: append-only (only the
    outcome and ``served_at`` change), deleted with the endpoint.

    Secrets by reference only: their keys, a keyed digest of all values (``secrets_version``) and one per
    value (``secret_fingerprints``, which a rollback compares with the values the endpoint still stores).
    No value and no ciphertext of one is kept here; see ``endpoints.spec_revisions``."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="revisions")
    generation = models.PositiveBigIntegerField(help_text="The endpoint's spec generation: the revision number")
    spec = models.JSONField(help_text="endpoints.spec.stored_spec as applied (no secret values)")
    secret_keys = models.JSONField(default=list, blank=True)
    secrets_version = models.CharField(max_length=16, blank=True, help_text="Keyed digest of the values")
    secret_fingerprints = models.JSONField(default=dict, blank=True, editable=False,
                                           help_text="Keyed digest per value; never shown")
    pinned_revision = models.CharField(max_length=40, help_text="The model commit sha the pods ran")
    image = models.CharField(max_length=512, help_text="The container image rendered")
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    changed_by_name = models.CharField(max_length=150, default="system")
    changed_at = models.DateTimeField(help_text="When the spec was changed")
    applied_at = models.DateTimeField(default=timezone.now, help_text="When the reconciler first applied it")
    outcome = models.CharField(max_length=16, choices=RevisionOutcome.choices, default=RevisionOutcome.APPLIED)
    served_at = models.DateTimeField(null=True, blank=True, help_text="When it first reached running")
    rollback_of = models.PositiveBigIntegerField(null=True, blank=True, help_text="The revision it restored")
    rolled_back_from = models.PositiveBigIntegerField(null=True, blank=True, help_text="The revision it replaced")

    class Meta:
        ordering = ["endpoint", "-generation"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "generation"], name="endpoint_revision_unique"),
            # status.servingRevision and the rollback target rely on at most one serving revision
            models.UniqueConstraint(fields=["endpoint"], condition=models.Q(outcome="serving"),
                                    name="endpoint_revision_one_serving"),
        ]

    def __str__(self) -> str:
        return f"revision {self.generation} ({self.outcome})"


class RolloutPhase(models.TextChoices):
    STARTING = "starting", "starting"  # the canary's pods are starting; it has no traffic yet
    PROGRESSING = "progressing", "progressing"  # a step's weight is in force: its pause, then the gates
    PROMOTING = "promoting", "promoting"  # gates passed (or promoted by hand): the stable rolls to the new spec
    PROMOTED = "promoted", "promoted"
    ROLLED_BACK = "rolledBack", "rolled back"  # a gate failed, or aborted by hand: the stable keeps serving


ACTIVE_PHASES = (RolloutPhase.STARTING, RolloutPhase.PROGRESSING, RolloutPhase.PROMOTING)


class Rollout(models.Model):
    """The endpoint's latest canary update (``endpoints.rollouts``): the spec generation it brings (the
    canary), the revision that served when it began (the stable), its steps, gates and where it stands.

    One row per endpoint, replaced by the next canary. While it is active and after it rolled back (as long
    as its generation is the endpoint's spec), the reconciler runs the stable revision's spec beside or
    instead of the endpoint's own; ``stable_secrets_encrypted`` holds the stable's secret bundle for that
    (Fernet, as on the Endpoint row) and is cleared once the rollout no longer needs it."""

    endpoint = models.OneToOneField(Endpoint, on_delete=models.CASCADE, primary_key=True, related_name="rollout")
    generation = models.PositiveBigIntegerField(help_text="The canary: the endpoint's spec generation")
    stable_generation = models.PositiveBigIntegerField(help_text="The spec revision serving when it began")
    stable_held = models.PositiveIntegerField(help_text="Replicas the stable holds against quota meanwhile")
    canary_held = models.PositiveIntegerField(help_text="Replicas the new spec holds on its own")
    stable_secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    steps = models.JSONField(help_text="[{weight, pauseSeconds}], as accepted")
    gates = models.JSONField(help_text="{maxErrorRate, maxP95LatencyMs, minRequests}, defaults filled in")
    sticky = models.BooleanField(default=False, help_text="A caller stays on one side while the weight holds")
    phase = models.CharField(max_length=16, choices=RolloutPhase.choices, default=RolloutPhase.STARTING)
    step = models.PositiveSmallIntegerField(default=0, help_text="Index of the step in force")
    weight = models.PositiveSmallIntegerField(default=0, help_text="Percent of requests the gateway sends the canary")
    step_started_at = models.DateTimeField(null=True, blank=True)
    baseline = models.JSONField(default=dict, blank=True, help_text="Traffic totals when the step began")
    readings = models.JSONField(default=dict, blank=True, help_text="The last gate evaluation")
    message = models.CharField(max_length=1024, blank=True)
    started_by_name = models.CharField(max_length=150, default="system")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollout of revision {self.generation} ({self.phase})"

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def version(self) -> str:
        """The canary's traffic version (``controlplane.traffic``)."""
        return f"r{self.generation}"


def rollout_of(endpoint: Endpoint) -> Rollout | None:
    """The endpoint's rollout row (its latest canary), None when it never had one; no query when the row
    was loaded with ``select_related("rollout")`` (or cached as absent)."""
    return getattr(endpoint, "rollout", None)
