"""Strict JSON field types: a wrong JSON type is a 400, never silently coerced ("5" is not 5)."""

import re

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

# An environment variable name as Kubernetes validates it (env entries and the keys of the Secret that
# `envFrom` reads); it also keeps NUL and other characters Postgres cannot store out of JSON keys.
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def unstorable_text(value, path: str = "") -> str | None:
    """The path of the first string (key or value) in a JSON value that Postgres cannot store (a NUL or a
    lone surrogate), or None. DRF's CharField refuses these; free-form JSON needs this check."""
    if isinstance(value, str):
        return path if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{str(key)[:64]}" if path else str(key)[:64]  # the path is echoed in the error
            found = unstorable_text(key, sub) if isinstance(key, str) else None
            if found is not None or (found := unstorable_text(item, sub)) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := unstorable_text(item, f"{path}[{index}]")) is not None:
                return found
    return None


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number (an integer or a float), never a string or a boolean."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictDictField(serializers.DictField):
    """A JSON object of environment variables (env, secrets): names as Kubernetes accepts them, string
    values, both length-bounded. ``refuse(name)`` true refuses a name with ``refuse_message``, keyed by it."""

    def __init__(self, *, max_items: int = 100, key_max: int = 128, value_max: int = 8192, refuse=None,
                 refuse_message: str = "This name is not allowed.", **kwargs):
        self.max_items, self.key_max, self.value_max = max_items, key_max, value_max
        self.refuse, self.refuse_message = refuse, refuse_message
        super().__init__(child=StrictCharField(allow_blank=True, max_length=value_max, trim_whitespace=False), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        if len(data) > self.max_items:
            raise serializers.ValidationError(f"At most {self.max_items} entries are allowed.")
        for key in data:
            if not key or len(key) > self.key_max:
                raise serializers.ValidationError(f"Keys must be 1 to {self.key_max} characters.")
            if not ENV_NAME_RE.fullmatch(key):
                raise serializers.ValidationError(
                    f"Invalid name {key[:64]!r}: use letters, digits, '_', '-' and '.', not starting with a digit.")
            if self.refuse and self.refuse(key):
                raise serializers.ValidationError({key: [self.refuse_message]})
        return super().to_internal_value(data)


class StrictListField(serializers.ListField):
    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class StrictDictFieldSchema(OpenApiSerializerFieldExtension):
    """Document the limits StrictDictField enforces (OpenAPI 3.0 cannot express the key pattern)."""

    target_class = StrictDictField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        return {"type": "object", "maxProperties": field.max_items,
                "additionalProperties": {"type": "string", "maxLength": field.value_max},
                "description": f"Names match {ENV_NAME_RE.pattern} (at most {field.key_max} characters)."}
