"""Shapes of the rollout API: the ``rollout`` an update may carry, and ``status.rollout`` (``endpoints.rollouts``)."""

from rest_framework import serializers

from controlplane.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictListField,
)

from .models import RolloutPhase

STRATEGIES = ("rolling", "canary")
MAX_STEPS = 10
MAX_PAUSE_SECONDS = 86_400
# What a canary does when the update leaves a part out: two steps of five minutes, HF-like gates.
DEFAULT_STEPS = ({"weight": 10, "pauseSeconds": 300}, {"weight": 50, "pauseSeconds": 300})
DEFAULT_GATES = {"maxErrorRate": 0.01, "maxP95LatencyMs": 800, "minRequests": 100}


class RolloutStepSerializer(serializers.Serializer):
    weight = StrictIntegerField(min_value=1, max_value=100, help_text="Percent of requests sent to the canary")
    pauseSeconds = StrictIntegerField(min_value=0, max_value=MAX_PAUSE_SECONDS, default=300,
                                      help_text="How long the weight holds before the gates judge the step")


class RolloutGatesSerializer(serializers.Serializer):
    maxErrorRate = StrictFloatField(min_value=0, max_value=1, default=DEFAULT_GATES["maxErrorRate"],
                                    help_text="Largest share of 5xx answers the canary may give")
    maxP95LatencyMs = StrictFloatField(min_value=1, max_value=300_000, default=DEFAULT_GATES["maxP95LatencyMs"])
    minRequests = StrictIntegerField(min_value=0, max_value=1_000_000, default=DEFAULT_GATES["minRequests"],
                                     help_text="Canary answers a step needs before it is judged (it waits)")


class RolloutSerializer(serializers.Serializer):
    """``rollout`` in an update body. ``rolling`` (the default): the update replaces the pods in place, as
    without it. ``canary``: the new spec runs beside the serving one and takes the steps' weights in turn,
    each judged by the gates; see docs/rollouts.md."""

    strategy = serializers.ChoiceField(choices=STRATEGIES, default="rolling")
    steps = StrictListField(child=RolloutStepSerializer(), min_length=1, max_length=MAX_STEPS, required=False)
    gates = RolloutGatesSerializer(required=False)
    sticky = StrictBooleanField(default=False, help_text="Keep each caller (token, else address) on one side")

    def validate(self, attrs):
        steps = attrs.get("steps") or [dict(s) for s in DEFAULT_STEPS]
        weights = [s["weight"] for s in steps]
        if weights != sorted(set(weights)):
            raise serializers.ValidationError({"steps": ["Step weights must increase from step to step."]})
        gates = {**DEFAULT_GATES, **(attrs.get("gates") or {})}
        return {**attrs, "steps": [dict(s) for s in steps], "gates": dict(gates)}


class RolloutReadingSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    errorRate = serializers.FloatField(allow_null=True)
    p95LatencyMs = serializers.FloatField(allow_null=True)


class RolloutReadingsSerializer(serializers.Serializer):
    canary = RolloutReadingSerializer()
    stable = RolloutReadingSerializer()
    windowSeconds = serializers.FloatField()
    verdict = serializers.CharField(help_text="pass | fail | waiting")
    failed = serializers.ListField(child=serializers.CharField(), help_text="The gates that failed")
    detail = serializers.DictField(child=serializers.CharField(), help_text="gate -> what it saw, in a sentence")


class RolloutStatusSerializer(serializers.Serializer):
    """``status.rollout``: the endpoint's canary for the spec now desired (null when it has none)."""

    strategy = serializers.CharField()
    phase = serializers.ChoiceField(choices=RolloutPhase.values)
    step = serializers.IntegerField(help_text="1-based number of the step in force")
    steps = RolloutStepSerializer(many=True)
    weights = serializers.DictField(child=serializers.IntegerField(), help_text="{stable, canary} percent")
    gates = RolloutGatesSerializer()
    sticky = serializers.BooleanField()
    stableRevision = serializers.IntegerField()
    canaryRevision = serializers.IntegerField()
    readings = RolloutReadingsSerializer(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    startedAt = serializers.CharField()
    stepStartedAt = serializers.CharField(allow_null=True)
    finishedAt = serializers.CharField(allow_null=True)


class RolloutActionSerializer(serializers.Serializer):
    """``POST .../rollout/promote`` and ``.../rollout/abort``: no body needed; a reason may be given."""

    reason = StrictCharField(max_length=256, required=False, allow_blank=True)
