"""The shapes of the cost ledger and budget API (``endpoints.cost_views``)."""

from decimal import Decimal

from rest_framework import serializers

from quotas.models import Budget

MAX_SPAN_DAYS = 400


class CostQuerySerializer(serializers.Serializer):
    """``from`` / ``to``: ISO 8601 instants (default: the month so far); ``groupBy``: endpoint or day."""

    # "from" is a keyword: declared through the class namespace, as DRF reads declared fields from it.
    locals()["from"] = serializers.DateTimeField(required=False, default=None, allow_null=True)
    to = serializers.DateTimeField(required=False, default=None, allow_null=True)
    groupBy = serializers.ChoiceField(choices=["endpoint", "day"], default="endpoint")

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start and end:
            if end <= start:
                raise serializers.ValidationError({"to": ["must be after from"]})
            if (end - start).days > MAX_SPAN_DAYS:
                raise serializers.ValidationError({"to": [f"a report spans at most {MAX_SPAN_DAYS} days"]})
        return attrs


class CostItemSerializer(serializers.Serializer):
    endpoint = serializers.CharField(required=False, help_text="With groupBy=endpoint")
    day = serializers.CharField(required=False, help_text="With groupBy=day (UTC)")
    cost = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)
    replicaHours = serializers.FloatField()


class CostReportSerializer(serializers.Serializer):
    locals()["from"] = serializers.DateTimeField()
    to = serializers.DateTimeField()
    currency = serializers.CharField()
    groupBy = serializers.CharField()
    total = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)
    replicaHours = serializers.FloatField()
    items = CostItemSerializer(many=True)


class BudgetInSerializer(serializers.Serializer):
    monthlyLimit = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"),
                                            help_text="USD per calendar month (UTC)")
    notifyPercent = serializers.IntegerField(min_value=1, max_value=100, default=80)
    action = serializers.ChoiceField(choices=Budget.Action.values, default=Budget.Action.NOTIFY,
                                     help_text="At 100 %: notify only, pause endpoints not tagged 'essential', "
                                               "or refuse scale-ups")


class BudgetSerializer(serializers.Serializer):
    monthlyLimit = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=False)
    notifyPercent = serializers.IntegerField()
    action = serializers.CharField()
    currency = serializers.CharField()
    spentThisMonth = serializers.DecimalField(max_digits=14, decimal_places=6, coerce_to_string=False)
    notified = serializers.BooleanField(help_text="The threshold notice went out this month")
    exhausted = serializers.BooleanField(help_text="The budget ran out this month and its action applied")
