"""Strict JSON field types: a wrong JSON type is a 400, never silently coerced ("5" is not 5)."""

from rest_framework import serializers


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
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictDictField(serializers.DictField):
    """A JSON object whose values are strings (env, secrets): keys and values length-bounded."""

    def __init__(self, *, max_items: int = 100, key_max: int = 128, value_max: int = 8192, **kwargs):
        self.max_items, self.key_max, self.value_max = max_items, key_max, value_max
        super().__init__(child=StrictCharField(allow_blank=True, max_length=value_max, trim_whitespace=False), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        if len(data) > self.max_items:
            raise serializers.ValidationError(f"At most {self.max_items} entries are allowed.")
        for key in data:
            if not key or len(key) > self.key_max:
                raise serializers.ValidationError(f"Keys must be 1 to {self.key_max} characters.")
        return super().to_internal_value(data)


class StrictListField(serializers.ListField):
    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)
