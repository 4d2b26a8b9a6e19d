"""Shapes of the provider (hardware) and quota API bodies."""

from rest_framework import serializers

from controlplane.fields import StrictCharField, StrictIntegerField
from controlplane.wire import TimestampField

from .models import Accelerator


class HardwareQuotaSerializer(serializers.Serializer):
    maxAccelerators = serializers.IntegerField()
    usedAccelerators = serializers.IntegerField()


class HardwareComputeSerializer(serializers.Serializer):
    id = serializers.CharField()
    accelerator = serializers.CharField()
    numAccelerators = serializers.IntegerField()
    numCpus = serializers.IntegerField()
    memoryGb = serializers.FloatField()
    gpuMemoryGb = serializers.FloatField(allow_null=True)
    instanceType = serializers.CharField()
    instanceSize = serializers.CharField()
    architecture = serializers.CharField()
    status = serializers.CharField()
    pricePerHour = serializers.FloatField()
    quota = HardwareQuotaSerializer()


class HardwareRegionSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    status = serializers.CharField()
    computes = HardwareComputeSerializer(many=True)


class HardwareVendorSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.CharField()
    regions = HardwareRegionSerializer(many=True)


class HardwareSerializer(serializers.Serializer):
    vendors = HardwareVendorSerializer(many=True)


class QuotaLineSerializer(serializers.Serializer):
    accelerator = serializers.CharField()
    unit = serializers.CharField()
    limit = serializers.IntegerField()
    used = serializers.IntegerField()
    available = serializers.IntegerField()


class QuotaHoldingSerializer(serializers.Serializer):
    name = serializers.CharField()
    accelerator = serializers.CharField()
    instance = serializers.CharField()
    maxReplica = serializers.IntegerField()
    heldReplica = serializers.IntegerField(help_text="Replicas held: the largest maxReplica of the base and schedules")
    unitsPerReplica = serializers.IntegerField()
    units = serializers.IntegerField()
    state = serializers.CharField()


class QuotaSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    quotas = QuotaLineSerializer(many=True)
    endpoints = QuotaHoldingSerializer(many=True)


class QuotaRequestCreateSerializer(serializers.Serializer):
    accelerator = serializers.ChoiceField(choices=Accelerator.values)
    limit = StrictIntegerField(min_value=1, max_value=1_000_000)
    reason = StrictCharField(max_length=2000)


class QuotaRequestSerializer(serializers.Serializer):
    """A ``QuotaRequest`` and its decision."""

    id = serializers.IntegerField(source="pk")
    accelerator = serializers.CharField()
    limit = serializers.IntegerField(source="requested_limit")
    reason = serializers.CharField()
    status = serializers.CharField()
    requestedBy = serializers.CharField(source="requested_by.username", allow_null=True)
    createdAt = TimestampField(source="created_at")
    decidedBy = serializers.CharField(source="decided_by.username", allow_null=True)
    decidedAt = TimestampField(source="decided_at", allow_null=True)
    decisionNote = serializers.CharField(source="decision_note", allow_blank=True)


class QuotaRequestListSerializer(serializers.Serializer):
    items = QuotaRequestSerializer(many=True)
