"""The API's JSON renderer writes what DRF's own renderer writes (controlplane.renderers)."""

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from controlplane.renderers import FastJSONRenderer
from endpoints.selectors import endpoint_get
from endpoints.services import endpoint_create
from endpoints.spec import endpoint_body
from tests.factories import endpoint_spec, make_user

SAMPLES = [
    {"a": 1, "b": [1, 2, {"c": None}], "d": True, "e": "plain"},
    {"when": datetime(2026, 12, 4, 11, 3, 54, 317123, tzinfo=UTC), "day": date(2026, 12, 4),
     "naive": datetime(2026, 1, 2, 3, 4, 5), "span": timedelta(minutes=90)},
    {"cost": Decimal("12.345600"), "id": uuid.UUID("12345678-1234-5678-1234-567812345678")},
    {"text": "héllo ✓ \u2028 line \u2029 para \"quoted\" \\ back\nslash\t", "lazy": gettext_lazy("Not found.")},
    {1: "int key", "tuple": (1, 2), "big": 2**63 - 1, "negative": -(2**63)},
    {"huge": 2**70},  # beyond orjson: DRF writes it
    [],
    "just a string",
]


@pytest.mark.parametrize("data", SAMPLES, ids=range(len(SAMPLES)))
def test_the_same_bytes_as_drfs_renderer(data):
    assert FastJSONRenderer().render(data) == JSONRenderer().render(data)


def test_floats_keep_their_values():
    data = {"values": [0.1, 1e-05, 1e16, 2.5, -0.0, 5e-324, 1.7976931348623157e308, 123456789.123]}
    assert json.loads(FastJSONRenderer().render(data)) == json.loads(JSONRenderer().render(data))


def test_an_indent_asked_for_is_drfs_rendering():
    data = {"a": [1, {"b": 2}]}
    ours = FastJSONRenderer().render(data, "application/json; indent=2")
    assert ours == JSONRenderer().render(data, "application/json; indent=2")
    assert b"\n  " in ours


def test_no_data_is_an_empty_body():
    assert FastJSONRenderer().render(None) == b""


@pytest.mark.django_db
def test_an_endpoint_body_renders_identically():
    user = make_user("rendered")
    endpoint_create(account=user.personal_account, spec=endpoint_spec("web", tags=["ü", "x"]), actor=user)
    body = endpoint_body(endpoint_get(account=user.personal_account, name="web"))
    assert FastJSONRenderer().render(body) == JSONRenderer().render(body)
