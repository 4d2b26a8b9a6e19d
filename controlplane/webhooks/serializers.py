"""Shapes of the webhook API bodies (shape only; the rules live in ``services``)."""

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..fields import StrictBooleanField, StrictCharField, StrictListField
from ..wire import TimestampField
from .events import ALL, EVENT_TYPES

EVENTS_HELP = f"Event types to receive ({', '.join(EVENT_TYPES)}), or [\"{ALL}\"] (the default) for all."


class WebhookCreateSerializer(serializers.Serializer):
    url = StrictCharField(max_length=2048, help_text="http(s) URL the events are POSTed to; internal addresses "
                                                    "are refused")
    events = StrictListField(child=StrictCharField(max_length=64), required=False, min_length=1, max_length=20,
                             help_text=EVENTS_HELP)
    description = StrictCharField(max_length=256, required=False, allow_blank=True)


class WebhookUpdateSerializer(WebhookCreateSerializer):
    url = StrictCharField(max_length=2048, required=False)
    enabled = StrictBooleanField(required=False, help_text="false stops deliveries; true re-enables (and clears "
                                                           "the failure count)")


class WebhookSerializer(serializers.Serializer):
    """A subscription as the API shows it: never its secret."""

    id = serializers.IntegerField(source="pk")
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField(allow_blank=True)
    enabled = serializers.BooleanField()
    disabledReason = serializers.CharField(source="disabled_reason", allow_blank=True)
    consecutiveFailures = serializers.IntegerField(source="consecutive_failures")
    createdAt = TimestampField(source="created_at")
    updatedAt = TimestampField(source="updated_at")


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_...). Shown once; store it now.")


class WebhookListSerializer(serializers.Serializer):
    items = WebhookSerializer(many=True)


class WebhookAttemptSerializer(serializers.Serializer):
    attemptedAt = TimestampField(source="attempted_at")
    outcome = serializers.CharField(help_text="succeeded, http_error, timeout, network_error or refused")
    statusCode = serializers.IntegerField(source="status_code", allow_null=True)
    durationMs = serializers.IntegerField(source="duration_ms")
    error = serializers.CharField(allow_blank=True)
    responseExcerpt = serializers.CharField(source="response_excerpt", allow_blank=True)
    manual = serializers.BooleanField()


@extend_schema_field({"type": "object", "additionalProperties": True,
                      "description": "The body sent: {type, timestamp, data}"})
class PayloadField(serializers.Field):
    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: str):
        return json.loads(value)


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    messageId = serializers.CharField(source="message_id", help_text="The webhook-id header, the same on every attempt")
    eventType = serializers.CharField(source="event_type")
    status = serializers.CharField(help_text="pending, succeeded or failed (gave up)")
    attemptCount = serializers.IntegerField(source="attempt_count")
    nextAttemptAt = TimestampField(source="next_attempt_at", allow_null=True)
    createdAt = TimestampField(source="created_at")
    deliveredAt = TimestampField(source="delivered_at", allow_null=True)
    payload = PayloadField(source="body")
    attempts = WebhookAttemptSerializer(many=True, source="attempts.all")


class WebhookDeliveryListSerializer(serializers.Serializer):
    items = WebhookDeliverySerializer(many=True)
