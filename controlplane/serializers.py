"""Shapes of the account, whoami and token API bodies (shape only; rules live in services)."""

from rest_framework import serializers

from .fields import StrictCharField
from .wire import TimestampField


class WhoamiOrgSerializer(serializers.Serializer):
    type = serializers.CharField()
    name = serializers.CharField()
    roleInOrg = serializers.CharField()


class WhoamiSerializer(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.CharField()
    name = serializers.CharField()
    fullname = serializers.CharField()
    email = serializers.CharField(allow_null=True)
    isStaff = serializers.BooleanField()
    orgs = WhoamiOrgSerializer(many=True)
    auth = serializers.DictField()


class TokenCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=64)
    role = serializers.ChoiceField(choices=["read", "write"], default="write")
    expiresAt = serializers.DateTimeField(required=False, allow_null=True, default=None)


class HubTokenSerializer(serializers.Serializer):
    token = StrictCharField(min_length=8, max_length=512, trim_whitespace=False,
                            help_text="A Hugging Face Hub token (write-only: never returned)")


class HubTokenStateSerializer(serializers.Serializer):
    set = serializers.BooleanField(help_text="Whether the account has a Hub token")


class TokenSerializer(serializers.Serializer):
    """An ``ApiToken`` as the API shows it: never its secret or digest."""

    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()
    role = serializers.CharField()
    prefix = serializers.CharField()
    createdAt = TimestampField(source="created_at")
    lastUsedAt = TimestampField(source="last_used_at", allow_null=True)
    expiresAt = TimestampField(source="expires_at", allow_null=True)
    revokedAt = TimestampField(source="revoked_at", allow_null=True)


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The secret. Shown once; store it now.")


class TokenListSerializer(serializers.Serializer):
    items = TokenSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    code = serializers.CharField(required=False)
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class EmptySerializer(serializers.Serializer):
    pass
