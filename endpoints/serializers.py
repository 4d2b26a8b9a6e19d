"""Shapes of the Endpoint API bodies: the spec a client sends and the object it gets back.

Input serializers check shape only (types, enums, ranges, lengths, one-key unions); rules that need the
database (instance catalog, quotas, names taken) live in ``endpoints.services``. Unknown keys are
ignored for forward compatibility, as the HF API does.
"""

import re
from functools import cache
from zoneinfo import available_timezones

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictDictField,
    StrictIntegerField,
    StrictListField,
    unstorable_text,
)
from controlplane.images import (
    CONTAINER_VARIANTS,
    FRAMEWORKS,
    IMAGE_VARIANTS,
    device_env,
    engine_env_name,
)
from controlplane.names import ENDPOINT_NAME_PATTERN
from controlplane.validators import FullMatchValidator
from controlplane.wire import TimestampField

from .cron import CronError, cron_parse
from .models import EndpointType, RevisionOutcome
from .rollout_serializers import RolloutStatusSerializer
from .scaling import MEASURES
from .spec import endpoint_body

MAX_REPLICA_LIMIT = 100
ENGINE_OPTION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
DEVICE_ENV_MESSAGE = ("Device-selection variables (NVIDIA_*, CUDA_VISIBLE_DEVICES and the like) are set by the "
                      "platform from the admitted accelerator, never by the endpoint.")


class EnvField(StrictDictField):
    """Environment variables a tenant sets: device-selection names refused (``controlplane.images.DEVICE_ENV_DENYLIST``)."""

    def __init__(self, **kwargs):
        super().__init__(refuse=device_env, refuse_message=DEVICE_ENV_MESSAGE, **kwargs)


class ProviderSerializer(serializers.Serializer):
    vendor = StrictCharField(max_length=32)
    region = StrictCharField(max_length=32)


@extend_schema_field({
    "type": "object", "nullable": True, "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
    "properties": {metric: {"type": "number", "minimum": low, "maximum": high, "nullable": True}
                   for metric, (low, high) in MEASURES.items()},
    "description": 'One key: {"hardwareUsage": percent} or {"pendingRequests": n}; null takes the default threshold.',
})
class MeasureField(serializers.DictField):
    pass


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())  # reads the zone database once per process


class ScheduleSerializer(serializers.Serializer):
    """One scheduled scaling window (``endpoints.schedules``): from each fire of ``cron`` in ``timezone``,
    for ``durationMinutes``, the replicas stay between this ``minReplica`` and ``maxReplica``."""

    cron = StrictCharField(max_length=128, help_text="Five-field cron expression, e.g. '0 8 * * 1-5'")
    timezone = StrictCharField(max_length=64, required=False, default="UTC", help_text="IANA time zone name")
    durationMinutes = StrictIntegerField(min_value=1, max_value=7 * 24 * 60,
                                         help_text="How long each window lasts (elapsed minutes)")
    minReplica = StrictIntegerField(min_value=0, max_value=MAX_REPLICA_LIMIT)
    maxReplica = StrictIntegerField(min_value=1, max_value=MAX_REPLICA_LIMIT)

    def validate_cron(self, value):
        try:
            cron_parse(value)
        except CronError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return " ".join(value.split())

    def validate_timezone(self, value):
        if value not in _timezones():
            raise serializers.ValidationError(f"'{value}' is not an IANA time zone name (e.g. Europe/Paris).")
        return value

    def validate(self, attrs):
        if attrs["minReplica"] > attrs["maxReplica"]:
            raise serializers.ValidationError({"maxReplica": ["Must be greater than or equal to minReplica."]})
        return attrs


class ScalingSerializer(serializers.Serializer):
    minReplica = StrictIntegerField(min_value=0, max_value=MAX_REPLICA_LIMIT)
    maxReplica = StrictIntegerField(min_value=1, max_value=MAX_REPLICA_LIMIT)
    scaleToZeroTimeout = StrictIntegerField(min_value=1, max_value=7 * 24 * 60, required=False, allow_null=True,
                                            default=None, help_text="Minutes idle before scaling to zero")
    measure = MeasureField(required=False, allow_null=True, default=None)
    metric = serializers.ChoiceField(choices=list(MEASURES), required=False, allow_null=True, default=None)
    schedules = StrictListField(child=ScheduleSerializer(), required=False, default=list,
                                max_length=settings.SCALING_SCHEDULES_MAX,
                                help_text="Windows that replace minReplica/maxReplica while open (docs/autoscaling.md)")

    def validate_measure(self, value):
        if value is None:
            return None
        if len(value) != 1 or next(iter(value)) not in MEASURES:
            raise serializers.ValidationError(f"Exactly one key, one of: {', '.join(MEASURES)}.")
        (metric, threshold), = value.items()
        if threshold is None:
            return {metric: None}
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise serializers.ValidationError(f"{metric} must be a number or null.")
        low, high = MEASURES[metric]
        if not low <= threshold <= high:
            raise serializers.ValidationError(f"{metric} must be between {low:g} and {high:g}.")
        return {metric: float(threshold)}

    def validate(self, attrs):
        if attrs["minReplica"] > attrs["maxReplica"]:
            raise serializers.ValidationError({"maxReplica": ["Must be greater than or equal to minReplica."]})
        measure, metric = attrs.get("measure"), attrs.get("metric")
        if measure and metric and metric not in measure:
            raise serializers.ValidationError({"metric": [f"Must match the key of measure ({next(iter(measure))})."]})
        return attrs


class ComputeSerializer(serializers.Serializer):
    accelerator = serializers.ChoiceField(choices=["cpu", "gpu", "neuron"])
    instanceType = StrictCharField(max_length=64)
    instanceSize = StrictCharField(max_length=16)
    scaling = ScalingSerializer()


class CredentialsSerializer(serializers.Serializer):
    username = StrictCharField(max_length=256)
    password = StrictCharField(max_length=4096, required=False, allow_blank=True, trim_whitespace=False)


class ImageVariantSerializer(serializers.Serializer):
    """Fields every container variant shares; engine options pass through untouched."""

    url = StrictCharField(max_length=512, required=False)
    healthRoute = StrictCharField(max_length=256, required=False, allow_null=True, validators=[
        FullMatchValidator(r"^/[!-~]*$", "Must start with '/' (printable characters, no spaces).")])
    port = StrictIntegerField(min_value=1, max_value=65535, required=False, allow_null=True)
    credentials = CredentialsSerializer(required=False, allow_null=True)
    tensorParallelSize = StrictIntegerField(min_value=1, max_value=64, required=False, allow_null=True)
    dataParallelSize = StrictIntegerField(min_value=1, max_value=64, required=False, allow_null=True)
    env = EnvField(required=False, max_items=100)


def _variant_schema(variant: str) -> dict:
    """The documented shape of one ``model.image`` variant (checked by ImageVariantSerializer)."""
    nullable_int = {"type": "integer", "minimum": 1, "nullable": True}
    properties = {
        "url": {"type": "string", "minLength": 1, "maxLength": 512},
        "healthRoute": {"type": "string", "maxLength": 256, "pattern": "^/", "nullable": True},
        "port": {**nullable_int, "maximum": 65535},
        "tensorParallelSize": {**nullable_int, "maximum": 64},
        "dataParallelSize": {**nullable_int, "maximum": 64},
        "env": {"type": "object", "maxProperties": 100, "additionalProperties": {"type": "string", "maxLength": 8192}},
    }
    if variant == "custom":
        properties["credentials"] = {
            "type": "object", "nullable": True, "required": ["username"],
            "properties": {"username": {"type": "string", "minLength": 1, "maxLength": 256},
                           "password": {"type": "string", "maxLength": 4096}}}
    return {"type": "object", "properties": properties,
            **({"required": ["url"]} if variant in CONTAINER_VARIANTS else {}),
            "additionalProperties": {"description": "Engine options (scalars), passed to the container as env"}}


@extend_schema_field({
    "oneOf": [{"type": "object", "required": [variant], "additionalProperties": False,
               "properties": {variant: _variant_schema(variant)}} for variant in IMAGE_VARIANTS],
    "description": 'A one-key union: the variant and its options, e.g. {"huggingface": {}} or '
                   '{"tgi": {"url": "ghcr.io/huggingface/text-generation-inference:3"}}.',
})
class ImageField(serializers.JSONField):
    pass


def validate_image(value) -> dict:
    """``model.image``: exactly one known variant key whose value is an object; container variants need url."""
    if not isinstance(value, dict) or len(value) != 1:
        raise serializers.ValidationError(f"Must be an object with exactly one key, one of: {', '.join(IMAGE_VARIANTS)}.")
    (variant, body), = value.items()
    if variant not in IMAGE_VARIANTS:
        raise serializers.ValidationError(f"Unknown image variant '{variant}'; one of: {', '.join(IMAGE_VARIANTS)}.")
    if not isinstance(body, dict):
        raise serializers.ValidationError({variant: ["Must be an object."]})
    if (path := unstorable_text(body)) is not None:  # engine options pass through untouched, so check them
        raise serializers.ValidationError({variant: {path: ["Must not contain NUL or unpaired surrogate characters."]}})
    checked = ImageVariantSerializer(data=body)
    if not checked.is_valid():
        raise serializers.ValidationError({variant: checked.errors})
    if variant in CONTAINER_VARIANTS and not checked.validated_data.get("url"):
        raise serializers.ValidationError({variant: {"url": ["This field is required for a container image."]}})
    if checked.validated_data.get("credentials") and variant != "custom":
        raise serializers.ValidationError({variant: {"credentials": ["Only the custom variant takes credentials."]}})
    extra = {k: v for k, v in body.items() if k not in checked.fields}
    for key, value in extra.items():  # engine options become the engine's environment variables
        if not ENGINE_OPTION_RE.fullmatch(key):
            raise serializers.ValidationError({variant: {key: ["Engine option names are letters and digits."]}})
        if device_env(engine_env_name(variant, key)):
            raise serializers.ValidationError({variant: {key: [DEVICE_ENV_MESSAGE]}})
        if isinstance(value, str) and len(value) > 4096:
            raise serializers.ValidationError({variant: {key: ["At most 4096 characters."]}})
    return {variant: {**extra, **{k: v for k, v in checked.validated_data.items()}}}


class ModelSerializer(serializers.Serializer):
    repository = StrictCharField(max_length=256, validators=[
        FullMatchValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$", "Must be a Hub repo id.")])
    revision = StrictCharField(max_length=256, required=False, allow_null=True, default=None)
    framework = serializers.ChoiceField(choices=list(FRAMEWORKS))
    task = StrictCharField(max_length=64, required=False, allow_null=True, default=None)
    image = ImageField(required=False, default=lambda: {"huggingface": {}}, validators=[])
    env = EnvField(required=False, default=dict, max_items=100)
    secrets = EnvField(required=False, default=dict, max_items=100)
    command = StrictListField(child=StrictCharField(max_length=4096, trim_whitespace=False), required=False,
                              allow_null=True, default=None, max_length=64)
    args = StrictListField(child=StrictCharField(max_length=4096, trim_whitespace=False, allow_blank=True),
                           required=False, allow_null=True, default=None, max_length=256)

    def validate_image(self, value):
        return validate_image(value)


class RouteSerializer(serializers.Serializer):
    domain = StrictCharField(max_length=253, required=False, allow_null=True, default=None)
    path = StrictCharField(max_length=256, required=False, allow_null=True, default=None)


class PrivateServiceSerializer(serializers.Serializer):
    accountId = StrictCharField(validators=[FullMatchValidator(r"^\d{12}$", "Must be a 12-digit AWS account id.")])
    region = serializers.ChoiceField(choices=["us-east-1", "eu-west-1"])
    shared = StrictBooleanField(required=False, default=False)


class EndpointSpecSerializer(serializers.Serializer):
    """A whole endpoint spec: the create body, and an update body once merged into the stored spec."""

    name = StrictCharField(max_length=32, validators=[
        FullMatchValidator(ENDPOINT_NAME_PATTERN,
                           "Lowercase letters, digits and '-', starting and ending with a letter or digit.")])
    type = serializers.ChoiceField(choices=EndpointType.values, default=EndpointType.AUTHENTICATED)
    provider = ProviderSerializer()
    compute = ComputeSerializer()
    model = ModelSerializer()
    tags = StrictListField(child=StrictCharField(max_length=128, allow_blank=True), required=False, default=list,
                           max_length=64)
    route = RouteSerializer(required=False, allow_null=True, default=None)
    cacheHttpResponses = StrictBooleanField(required=False, allow_null=True, default=False)
    privateService = PrivateServiceSerializer(required=False, allow_null=True, default=None)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Expected a JSON object."]})
        return super().to_internal_value(data)


class EndpointListQuerySerializer(serializers.Serializer):
    tags = StrictCharField(max_length=128, required=False, allow_blank=True, default="")


class EndpointUpdateSerializer(serializers.Serializer):
    """The update body before merging: only its outline is checked here (an object)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Expected a JSON object."]})
        return data


# ---------------------------------------------------------------- output (documents the response shape)
class AccountRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class PrivateStatusSerializer(serializers.Serializer):
    serviceName = serializers.CharField()


class CostStatusSerializer(serializers.Serializer):
    monthToDate = serializers.FloatField(help_text="USD accrued this month (UTC) by ready replicas")
    currency = serializers.CharField()
    pricePerHour = serializers.FloatField(help_text="Per ready replica")
    accruing = serializers.BooleanField(help_text="True while a replica is ready")
    note = serializers.CharField(allow_null=True, help_text="Why nothing accrues now, when it does not")


class ScalingStatusSerializer(serializers.Serializer):
    activeSchedule = serializers.IntegerField(allow_null=True, help_text="Index of the schedule in force, or null")
    minReplica = serializers.IntegerField(help_text="The bounds applied now")
    maxReplica = serializers.IntegerField()
    nextChange = serializers.CharField(allow_null=True, help_text="When the schedule in force changes next")


class StatusSerializer(serializers.Serializer):
    createdAt = serializers.CharField()
    createdBy = AccountRefSerializer(allow_null=True)
    updatedAt = serializers.CharField()
    updatedBy = AccountRefSerializer(allow_null=True)
    private = PrivateStatusSerializer(allow_null=True)
    state = serializers.CharField()
    message = serializers.CharField()
    readyReplica = serializers.IntegerField()
    targetReplica = serializers.IntegerField()
    url = serializers.CharField(allow_null=True)
    errorMessage = serializers.CharField(allow_null=True)
    cost = CostStatusSerializer()
    scaling = ScalingStatusSerializer()
    desiredRevision = serializers.IntegerField(help_text="The spec revision desired (its spec generation)")
    servingRevision = serializers.IntegerField(allow_null=True,
                                               help_text="The spec revision that last reached running")
    rollout = RolloutStatusSerializer(allow_null=True, help_text="The canary of the spec desired, if it has one")


class ScalingOutSerializer(serializers.Serializer):
    minReplica = serializers.IntegerField()
    maxReplica = serializers.IntegerField()
    scaleToZeroTimeout = serializers.IntegerField(allow_null=True)
    measure = serializers.DictField(child=serializers.FloatField())
    metric = serializers.CharField()
    schedules = ScheduleSerializer(many=True)


class ComputeOutSerializer(serializers.Serializer):
    id = serializers.CharField()
    accelerator = serializers.CharField()
    instanceType = serializers.CharField()
    instanceSize = serializers.CharField()
    scaling = ScalingOutSerializer()


class ModelOutSerializer(serializers.Serializer):
    repository = serializers.CharField()
    revision = serializers.CharField(allow_null=True)
    task = serializers.CharField(allow_null=True)
    framework = serializers.CharField()
    image = serializers.DictField()
    env = serializers.DictField(child=serializers.CharField(allow_blank=True))
    secrets = serializers.DictField(child=serializers.CharField(), help_text="Values are always masked")
    command = serializers.ListField(child=serializers.CharField(allow_blank=True), allow_null=True)
    args = serializers.ListField(child=serializers.CharField(allow_blank=True), allow_null=True)


class RouteOutSerializer(serializers.Serializer):
    domain = serializers.CharField(allow_null=True)
    path = serializers.CharField(allow_null=True)


class EndpointSerializer(serializers.Serializer):
    """The HF v2 Endpoint object. Its fields document the shape; ``endpoint_body`` builds it (one pass over
    the row, no per-field machinery: lists of thousands stay cheap)."""

    name = serializers.CharField()
    type = serializers.CharField()
    accountId = serializers.CharField(allow_null=True)
    provider = ProviderSerializer()
    compute = ComputeOutSerializer()
    model = ModelOutSerializer()
    healthRoute = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField(allow_blank=True))
    route = RouteOutSerializer()
    cacheHttpResponses = serializers.BooleanField()
    privateService = serializers.DictField(allow_null=True)
    status = StatusSerializer()

    def to_representation(self, instance) -> dict:
        return endpoint_body(instance)


class EndpointListSerializer(serializers.Serializer):
    items = EndpointSerializer(many=True)


class EndpointEventSerializer(serializers.Serializer):
    """An ``EndpointEvent``: a state change, a spec change (``diff``, secret keys only) or an intent."""

    id = serializers.IntegerField(source="pk")
    kind = serializers.CharField()
    actor = serializers.CharField(source="actor_name")
    message = serializers.CharField(allow_blank=True)
    diff = serializers.DictField()
    fromState = serializers.CharField(source="from_state", allow_blank=True)
    toState = serializers.CharField(source="to_state", allow_blank=True)
    generation = serializers.IntegerField()
    createdAt = TimestampField(source="created_at")


class EndpointEventListSerializer(serializers.Serializer):
    items = EndpointEventSerializer(many=True)


class EndpointEventFrameSerializer(serializers.Serializer):
    """One Server-Sent Event of ``GET .../events?follow=true``, as an SSE client parses it."""

    id = serializers.CharField(required=False, help_text="The event's id: send it back as Last-Event-ID to resume")
    event = serializers.CharField(help_text="'message' for an endpoint event, 'end' when the stream ends")
    data = serializers.CharField(help_text="An endpoint event as JSON (the items' shape), or {\"reason\"} for 'end'")
    retry = serializers.IntegerField(required=False, help_text="Milliseconds to wait before reconnecting")


class RevisionSecretsSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField())
    version = serializers.CharField(allow_blank=True, help_text="Changes when any value changes; '' without secrets")


class EndpointRevisionSerializer(serializers.Serializer):
    """A spec revision (``EndpointRevision``): a spec generation as it reached the cluster. Secrets by key and
    version only; the registry password masked inside ``spec``."""

    revision = serializers.IntegerField(source="generation")
    outcome = serializers.ChoiceField(choices=RevisionOutcome.values)
    spec = serializers.DictField(help_text="The stored spec (as a create body, without model.secrets)")
    secrets = serializers.SerializerMethodField()
    pinnedRevision = serializers.CharField(source="pinned_revision", help_text="The model commit sha it ran")
    image = serializers.CharField(help_text="The container image rendered")
    changedBy = serializers.CharField(source="changed_by_name")
    changedAt = TimestampField(source="changed_at")
    appliedAt = TimestampField(source="applied_at")
    servedAt = TimestampField(source="served_at", allow_null=True)
    rollbackOf = serializers.IntegerField(source="rollback_of", allow_null=True)
    rolledBackFrom = serializers.IntegerField(source="rolled_back_from", allow_null=True)

    @extend_schema_field(RevisionSecretsSerializer)
    def get_secrets(self, revision) -> dict:
        return {"keys": list(revision.secret_keys), "version": revision.secrets_version}


class EndpointRevisionListSerializer(serializers.Serializer):
    items = EndpointRevisionSerializer(many=True)


class RollbackSerializer(serializers.Serializer):
    """``POST .../rollback``: no body (the revision that served before the current one) or a revision."""

    revision = serializers.IntegerField(min_value=1, required=False)
