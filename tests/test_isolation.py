"""Tenant isolation through the public interfaces, one test (or more) per item of the isolation review,
named by it (docs/security.md lists them all)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.errors import InvalidSpec
from controlplane.models import Account
from controlplane.services import org_create, user_create
from deployments.models import Cluster
from deployments.services import cluster_register
from endpoints.models import Endpoint
from tests.factories import endpoint_spec

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parent.parent


def create(api, **overrides):
    return api.post("/v2/endpoint/alice", endpoint_spec(**overrides), format="json")


# ---------------------------------------------------------------- item 4: device env vars
@pytest.mark.parametrize(("path", "overrides"), [
    ("model.env.NVIDIA_VISIBLE_DEVICES", {"model": {"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}}),
    ("model.env.nvidia_driver_capabilities", {"model": {"env": {"nvidia_driver_capabilities": "all"}}}),
    ("model.env.CUDA_VISIBLE_DEVICES", {"model": {"env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}}}),
    ("model.secrets.NVIDIA_VISIBLE_DEVICES", {"model": {"secrets": {"NVIDIA_VISIBLE_DEVICES": "all"}}}),
    ("model.image.custom.env.ROCR_VISIBLE_DEVICES",
     {"model": {"image": {"custom": {"url": "r.example.com/x:1", "env": {"ROCR_VISIBLE_DEVICES": "0"}}}}}),
    ("model.image.tgi.nvidiaVisibleDevices",  # an engine option becomes NVIDIA_VISIBLE_DEVICES
     {"model": {"image": {"tgi": {"url": "ghcr.io/huggingface/tgi:3", "nvidiaVisibleDevices": "all"}}}}),
])
def test_item04_device_env_vars_are_refused_naming_the_field(alice_api, path, overrides):
    r = create(alice_api, **overrides)
    assert r.status_code == 400, r.json()
    assert path in r.json()["fields"], r.json()
    assert "Device-selection" in r.json()["fields"][path][0]
    assert not Endpoint.objects.exists()


def test_item04_other_env_vars_still_pass(alice_api):
    r = create(alice_api, model={"env": {"MY_NVIDIA_SETTING": "1", "CUDA_HOME": "/usr/local/cuda"}})
    assert r.status_code == 202, r.json()


# ---------------------------------------------------------------- item 19: reserved names, empty prefix
@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public", "kube-anything", "controlplane"])
def test_item19_account_names_of_system_namespaces_are_reserved(name):
    with pytest.raises(InvalidSpec) as user_error:
        user_create(username=name)
    with pytest.raises(InvalidSpec) as org_error:
        org_create(slug=name)
    assert "slug" in user_error.value.fields and "slug" in org_error.value.fields
    assert not Account.objects.filter(slug=name).exists()


@pytest.mark.parametrize("prefix", ["", "-x", "Ie-", "a" * 21, "ie_"])
def test_item19_an_empty_or_invalid_namespace_prefix_is_refused(prefix):
    with pytest.raises(InvalidSpec) as error:
        cluster_register(name="c1", vendor="aws", region="us-east-1", in_cluster=True, namespace_prefix=prefix)
    assert "namespacePrefix" in error.value.fields
    assert not Cluster.objects.exists()


def test_item19_the_default_prefix_still_registers():
    assert cluster_register(name="c1", vendor="aws", region="us-east-1", in_cluster=True).namespace_prefix == "ie-"


# ---------------------------------------------------------------- item 21: names ending in a newline
@pytest.mark.parametrize(("path", "overrides"), [
    ("model.env", {"model": {"env": {"NAME\n": "x"}}}),
    ("model.secrets", {"model": {"secrets": {"TOKEN\n": "x"}}}),
    ("model.image.tgi.maxTokens\n", {"model": {"image": {"tgi": {"url": "ghcr.io/x:1", "maxTokens\n": "5"}}}}),
])
def test_item21_env_and_option_names_ending_in_a_newline_are_refused(alice_api, path, overrides):
    r = create(alice_api, **overrides)
    assert r.status_code == 400, r.json()
    assert any(p == path or p.startswith(path + ".") for p in r.json()["fields"]), r.json()
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(("path", "overrides"), [
    ("privateService.accountId", {"type": "private", "privateService": {"accountId": "12345678901\n2",
                                                                        "region": "us-east-1"}}),
    ("model.image.custom.healthRoute", {"model": {"image": {"custom": {"url": "r.example.com/x:1",
                                                                       "healthRoute": "/health\nX-Evil: 1"}}}}),
])
def test_item21_a_newline_inside_a_checked_value_is_refused(alice_api, path, overrides):
    r = create(alice_api, **overrides)
    assert r.status_code == 400, r.json()
    assert path in r.json()["fields"], r.json()


def test_item21_text_fields_trim_a_trailing_newline_before_checking(alice_api):
    r = create(alice_api, name="web\n", model={"repository": "gpt2\n"})
    assert r.status_code == 202, r.json()
    assert (r.json()["name"], r.json()["model"]["repository"]) == ("web", "gpt2")


def test_item21_an_account_name_ending_in_a_newline_is_refused():
    with pytest.raises(InvalidSpec) as error:
        org_create(slug="acme\n")
    assert "slug" in error.value.fields


# ---------------------------------------------------------------- item 11: production-safe defaults
def settings_in_a_fresh_process(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECRETS_"))}
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.DEBUG, settings.ALLOWED_HOSTS)")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**clean, "DJANGO_SETTINGS_MODULE": "controlplane.settings", **env})


def test_item11_debug_is_off_by_default_and_then_secrets_are_required():
    refused = settings_in_a_fresh_process()
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY and SECRETS_ENCRYPTION_KEY must be set" in refused.stderr
    production = settings_in_a_fresh_process(DJANGO_SECRET_KEY="k" * 50, SECRETS_ENCRYPTION_KEY="e" * 32)
    assert production.stdout.split() == ["False", "[]"], production.stderr


@pytest.mark.parametrize("depth", [33, 5000, 100_000])
def test_item11_deeply_nested_json_is_a_400_naming_the_limit(alice_api, depth):
    body = '{"name": "web", "model": ' + "[" * depth + "]" * depth + "}"
    r = alice_api.post("/v2/endpoint/alice", body, content_type="application/json")
    assert r.status_code == 400, r.content[:200]
    assert "nested deeper than 32 levels" in r.json()["error"]
    assert not Endpoint.objects.exists()
