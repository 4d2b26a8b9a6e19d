"""Secrets never leave the control plane in the clear: not in a response, a log line, a queued message or
a database column.

Planted: an API token's secret, ``model.secrets`` values and a registry password
(``model.image.custom.credentials.password``), then changed ones. The test drives create, get, list,
update (new values, masked values kept, a rejected update), lifecycle actions, events, whoami, the token
API and the admin pages, with every logger at DEBUG and SQL logging forced on (statements and their
parameters), and collects every response, log record and queued message. None may contain a planted
value. In the database, the secrets exist only as ciphertext that decrypts to them and the token only
as its SHA-256.
"""

import hashlib
import json
import logging
import secrets

import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.core import serializers
from django.db import connection
from rest_framework.test import APIClient

from controlplane.celery import app
from controlplane.encryption import decrypt_json
from controlplane.models import ApiToken
from endpoints.models import Endpoint
from tests.factories import endpoint_spec, make_token, make_user
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def planted(label: str) -> str:
    return f"{label}-{secrets.token_hex(12)}"


@pytest.fixture
def debug_everything(caplog):
    """Every logger at DEBUG, SQL statements logged with their parameters."""
    caplog.set_level(logging.DEBUG)
    for name in [*logging.root.manager.loggerDict, "django", "django.db.backends", "django.request"]:
        caplog.set_level(logging.DEBUG, logger=name)
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


class Recorder:
    """An API client that keeps every response (status line, headers and body) it saw."""

    def __init__(self, client: APIClient):
        self.client = client
        self.seen: list[str] = []

    def __call__(self, method: str, path: str, body=None, expect: int = 200):
        response = getattr(self.client, method)(path, body, format="json") if body is not None else \
            getattr(self.client, method)(path)
        self.seen.append(f"{response.status_code} {path}\n{dict(response.items())}\n{response.content.decode()}")
        assert response.status_code == expect, (path, response.status_code, response.content[:500])
        return response


def test_no_planted_secret_appears_in_responses_logs_messages_or_plain_columns(debug_everything,
                                                                               django_capture_on_commit_callbacks):
    alice = make_user("alice")
    token = make_token(alice)
    staff = make_user("root", is_staff=True)
    values = {"api_key": planted("apikey"), "db_password": planted("dbpass"), "registry": planted("regpass"),
              "api_key_2": planted("apikey2"), "registry_2": planted("regpass2"), "rejected": planted("rejected")}
    api = Recorder(api_client(token))
    image = {"custom": {"url": "registry.example.com/me/server:1", "port": 8080,
                        "credentials": {"username": "me", "password": values["registry"]}}}
    spec = endpoint_spec("secretive", model={"image": image, "secrets": {"API_KEY": values["api_key"],
                                                                          "DB_PASSWORD": values["db_password"]}})

    with django_capture_on_commit_callbacks(execute=True):
        created = api("post", "/v2/endpoint/alice", spec, expect=202).json()
        assert created["model"]["secrets"] == {"API_KEY": "********", "DB_PASSWORD": "********"}
        assert created["model"]["image"]["custom"]["credentials"] == {"username": "me", "password": "********"}
        api("get", "/v2/endpoint/alice/secretive")
        api("get", "/v2/endpoint/alice")
        # New API_KEY, DB_PASSWORD kept through its mask, a new registry password.
        api("put", "/v2/endpoint/alice/secretive", {"model": {
            "secrets": {"API_KEY": values["api_key_2"], "DB_PASSWORD": "********"},
            "image": {"custom": {**image["custom"], "credentials": {"username": "me", "password": values["registry_2"]}}},
        }})
        # The masked password keeps the stored one; an invalid update is refused without echoing values.
        api("put", "/v2/endpoint/alice/secretive", {"model": {"image": {"custom": {
            **image["custom"], "credentials": {"username": "me", "password": "********"}}}}})
        api("put", "/v2/endpoint/alice/secretive",
            {"model": {"secrets": {"API_KEY": values["rejected"], "9-not-a-name": values["rejected"]}}}, expect=400)
        api("post", "/v2/endpoint/alice/secretive/pause")
        api("post", "/v2/endpoint/alice/secretive/resume")
        api("post", "/v2/endpoint/alice/secretive/scale-to-zero")
    events = api("get", "/v2/endpoint/alice/secretive/events").json()["items"]
    # The update that only sent masks changed nothing, so it wrote no event.
    assert [e["kind"] for e in events] == ["create", "update", "pause", "resume", "scaleToZero"]
    assert events[1]["diff"]["model.secrets"] == [["API_KEY", "DB_PASSWORD"], ["API_KEY", "DB_PASSWORD"]]
    assert events[1]["diff"]["model.image.credentials.password"] == ["(changed)", "(changed)"]
    api("get", "/api/whoami-v2")
    api("get", "/v2/tokens")
    created_token = api("post", "/v2/tokens", {"name": "ci", "role": "read"}, expect=201).json()["token"]
    api.seen.pop()  # the one response that must show a token's secret is the one creating it
    values["api_token"], values["api_token_2"] = token, created_token
    api("get", "/v2/tokens")

    endpoint = Endpoint.objects.get(name="secretive")
    # A spec revision, recorded as the reconciler records one it applies: the history (API and admin inline)
    # shows secrets by key and digest only.
    from endpoints.services import endpoint_secrets
    from endpoints.spec_revisions import revision_record

    endpoint.pinned_revision = "1" * 40
    current, password = endpoint_secrets(endpoint=endpoint)
    revision_record(endpoint=endpoint, image="registry.example.com/me/server:1", secrets=current,
                    registry_password=password)
    assert api("get", "/v2/endpoint/alice/secretive/revisions").json()["items"][0]["secrets"]["keys"] == [
        "API_KEY", "DB_PASSWORD"]
    admin = Recorder(api_client(session_user=staff))
    for path in ("/admin/endpoints/endpoint/", f"/admin/endpoints/endpoint/{endpoint.pk}/change/",
                 "/admin/controlplane/apitoken/", f"/admin/controlplane/apitoken/{ApiToken.objects.first().pk}/change/",
                 "/admin/controlplane/auditevent/", "/admin/controlplane/account/"):
        admin("get", path)

    # The registry password and the secrets are stored, encrypted, and are what the renderer gets back.
    bundle = decrypt_json(endpoint.secrets_encrypted)
    assert bundle == {"secrets": {"API_KEY": values["api_key_2"], "DB_PASSWORD": values["db_password"]},
                      "registryPassword": values["registry_2"]}
    assert {t.digest for t in ApiToken.objects.all()} >= {hashlib.sha256(token.encode()).hexdigest(),
                                                          hashlib.sha256(created_token.encode()).hexdigest()}

    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in debug_everything.records)
    assert "INSERT INTO" in logs and "controlplane_apitoken" in logs, "SQL logging was not captured"
    with redis.Redis.from_url(settings.CELERY_BROKER_URL) as broker:
        queued = "\n".join(raw.decode() for raw in broker.lrange(app.conf.task_default_queue, 0, -1))
    rows = "\n".join(serializers.serialize("json", model._default_manager.all()) for model in apps.get_models())
    assert "secretive" in rows and queued, "nothing was captured"
    places = {"responses": "\n".join(admin.seen + api.seen), "logs": logs, "broker": queued, "database": rows}
    for label, value in values.items():
        for where, text in places.items():
            for form in {value, json.dumps(value)[1:-1]}:
                assert form not in text, f"{label} found in {where}"
