"""Tenant isolation through the public interfaces, one test (or more) per item of the isolation review,
named by it (docs/security.md lists them all)."""

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from controlplane.errors import Conflict, InvalidSpec
from controlplane.models import Account, ApiToken, AuditEvent
from controlplane.services import org_create, token_create, user_create
from deployments.models import Cluster
from deployments.render import render_endpoint
from deployments.services import cluster_register
from endpoints.models import Endpoint
from endpoints.services import endpoint_secrets
from tests.factories import endpoint_spec
from tests.helpers import api_client, expect
from tests.kube_helpers import NS, converge
from tests.kube_helpers import create as create_endpoint

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


def test_item13_a_pod_range_containing_an_allowed_private_range_is_refused_at_startup():
    keys = {"DJANGO_SECRET_KEY": "k" * 50, "SECRETS_ENCRYPTION_KEY": "e" * 32}
    refused = settings_in_a_fresh_process(**keys, PRIVATE_ALLOWED_CIDRS="192.168.0.0/16,10.244.8.0/24",
                                          TENANT_POD_CIDRS="10.244.0.0/16")
    assert refused.returncode != 0
    assert "PRIVATE_ALLOWED_CIDRS 10.244.8.0/24 lies inside the pod range 10.244.0.0/16" in refused.stderr
    equal = settings_in_a_fresh_process(**keys, PRIVATE_ALLOWED_CIDRS="10.244.0.0/16", TENANT_POD_CIDRS="10.244.0.0/16")
    assert equal.returncode != 0 and "TENANT_POD_CIDRS" in equal.stderr
    malformed = settings_in_a_fresh_process(**keys, PRIVATE_ALLOWED_CIDRS="10.0.0.0/8", TENANT_POD_CIDRS="10.244.0/x")
    assert malformed.returncode != 0 and "TENANT_POD_CIDRS: " in malformed.stderr
    # A pod range inside an allowed range is what the renderer excepts: that configuration starts.
    narrowed = settings_in_a_fresh_process(**keys, PRIVATE_ALLOWED_CIDRS="10.0.0.0/8", TENANT_POD_CIDRS="10.244.0.0/16")
    assert narrowed.returncode == 0, narrowed.stderr


@pytest.mark.parametrize("depth", [33, 5000, 100_000])
def test_item11_deeply_nested_json_is_a_400_naming_the_limit(alice_api, depth):
    body = '{"name": "web", "model": ' + "[" * depth + "]" * depth + "}"
    r = alice_api.post("/v2/endpoint/alice", body, content_type="application/json")
    assert r.status_code == 400, r.content[:200]
    assert "nested deeper than 32 levels" in r.json()["error"]
    assert not Endpoint.objects.exists()


# ---------------------------------------------------------------- item 10: child tokens
def test_item10_a_child_token_never_outlives_its_parents_expiry(alice):
    parent_expiry = timezone.now() + timedelta(hours=1)
    _token, secret = token_create(user=alice, name="short", expires_at=parent_expiry)
    api = api_client(secret)
    r = api.post("/v2/tokens", {"name": "child"}, format="json")
    assert r.status_code == 201, r.json()
    assert ApiToken.objects.get(name="child").expires_at == parent_expiry  # no expiry asked: the parent's
    later = (parent_expiry + timedelta(days=30)).isoformat()
    r = api.post("/v2/tokens", {"name": "longer", "expiresAt": later}, format="json")
    assert r.status_code == 400 and "expiresAt" in r.json()["fields"], r.json()
    assert not ApiToken.objects.filter(name="longer").exists()


def test_item10_revoking_a_token_revokes_every_token_it_made(alice):
    parent, secret = token_create(user=alice, name="parent")
    child_secret = api_client(secret).post("/v2/tokens", {"name": "child"}, format="json").json()["token"]
    grandchild_secret = api_client(child_secret).post("/v2/tokens", {"name": "grandchild"},
                                                         format="json").json()["token"]
    expect(api_client(grandchild_secret).get("/api/whoami-v2"), 200)
    _other, other_secret = token_create(user=alice, name="unrelated")
    r = api_client(other_secret).delete(f"/v2/tokens/{parent.pk}")
    assert r.status_code == 200, r.json()
    for revoked in (secret, child_secret, grandchild_secret):
        expect(api_client(revoked).get("/api/whoami-v2"), 401)
    expect(api_client(other_secret).get("/api/whoami-v2"), 200)
    assert set(ApiToken.objects.filter(revoked_at__isnull=False).values_list("name", flat=True)) == {
        "parent", "child", "grandchild"}


def test_item10_a_user_holds_a_bounded_number_of_live_tokens(alice, settings):
    settings.MAX_TOKENS_PER_USER = 3
    _token, secret = token_create(user=alice, name="first")
    api = api_client(secret)
    assert [api.post("/v2/tokens", {"name": f"t{i}"}, format="json").status_code for i in range(3)] == [201, 201, 409]
    r = api.post("/v2/tokens", {"name": "again"}, format="json")
    assert r.status_code == 409 and r.json()["code"] == "token_limit", r.json()
    assert ApiToken.objects.filter(user=alice).count() == 3


# ---------------------------------------------------------------- item 6: the masked password and a new registry
def custom_image(url: str, password: str) -> dict:
    return {"image": {"custom": {"url": url, "credentials": {"username": "bot", "password": password}}}}


def test_item06_a_new_registry_needs_the_password_again(alice_api):
    expect(create(alice_api, model=custom_image("registry.acme.example/team/app:1", "s3cret")), 202)
    stolen = {"model": custom_image("attacker.example/app:1", "********")}
    r = alice_api.put("/v2/endpoint/alice/my-endpoint", stolen, format="json")
    assert r.status_code == 400, r.json()
    assert "model.image.custom.credentials.password" in r.json()["fields"], r.json()
    endpoint = Endpoint.objects.get(name="my-endpoint")
    assert endpoint.image["custom"]["url"] == "registry.acme.example/team/app:1"  # nothing half-written
    assert endpoint_secrets(endpoint=endpoint)[1] == "s3cret"


def test_item06_the_mask_keeps_the_password_on_the_same_registry(alice_api):
    expect(create(alice_api, model=custom_image("registry.acme.example/team/app:1", "s3cret")), 202)
    same = {"model": custom_image("registry.acme.example/team/app:2", "********")}
    expect(alice_api.put("/v2/endpoint/alice/my-endpoint", same, format="json"), 200)
    assert endpoint_secrets(endpoint=Endpoint.objects.get(name="my-endpoint"))[1] == "s3cret"
    moved = {"model": custom_image("mirror.acme.example/team/app:2", "n3w")}  # a new password: accepted
    expect(alice_api.put("/v2/endpoint/alice/my-endpoint", moved, format="json"), 200)
    assert endpoint_secrets(endpoint=Endpoint.objects.get(name="my-endpoint"))[1] == "n3w"


# ---------------------------------------------------------------- item 20: object name collisions
def test_item20_a_private_foo_and_an_endpoint_named_foo_private_render_distinct_objects():
    from tests.test_render import PLATFORM, target

    foo = render_endpoint(target(id=1, name="foo", access="private",
                                 private_service={"accountId": "123456789012", "region": "us-east-1"}), PLATFORM)
    other = render_endpoint(target(id=2, name="foo-private"), PLATFORM)
    names = [(o["kind"], o["metadata"]["name"]) for o in foo + other]
    assert len(names) == len(set(names)), names
    assert ("Service", "private-ep-foo") in names and ("Service", "ep-foo-private") in names


def test_item20_no_two_endpoints_objects_share_a_name_whatever_they_are_called():
    from controlplane.names import OBJECT_NAME_SUFFIXES, endpoint_object_name

    names = ["foo", "foo-private", "private", "private-ep-foo", "ep-foo", "secrets-x", "foo-gateway", "a"]
    objects = [endpoint_object_name(n, s) for n in names for s in ("", *OBJECT_NAME_SUFFIXES)]
    assert len(objects) == len(set(objects))
    with pytest.raises(ValueError):
        endpoint_object_name("foo", "other")


# ---------------------------------------------------------------- item 7: shared clusters
def kubeconfig_for(server: str) -> str:
    return (f"apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{{name: k, cluster: {{server: '{server}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n")


def test_item07_one_api_server_is_registered_once_unless_forced():
    cluster_register(name="east", vendor="aws", region="us-east-1", kubeconfig_text=kubeconfig_for("https://k8s:6443"))
    with pytest.raises(Conflict) as twin:
        cluster_register(name="west", vendor="aws", region="eu-west-1",
                         kubeconfig_text=kubeconfig_for("https://k8s:6443/"))
    assert twin.value.code == "cluster_duplicate" and "east" in twin.value.message
    assert not Cluster.objects.filter(name="west").exists()
    cluster_register(name="west", vendor="aws", region="eu-west-1", kubeconfig_text=kubeconfig_for("https://k8s:6443"),
                     force=True)
    cluster_register(name="east", vendor="aws", region="us-east-1",  # re-registering itself is an update
                     kubeconfig_text=kubeconfig_for("https://k8s:6443"))
    assert Cluster.objects.count() == 2


# ---------------------------------------------------------------- item 1: Hub tokens per account
def test_item01_the_platform_token_never_serves_a_tenants_private_repository(alice, cluster, fake_kube, fake_hub,
                                                                             settings):
    settings.HF_HUB_TOKEN = "hf_platform_token"
    fake_hub.repos["acme/weights"] = {"main": "3" * 40}
    fake_hub.private["acme/weights"] = "hf_platform_token"  # the operator's token can read it
    endpoint = converge(create_endpoint(alice, "web", model={"repository": "acme/weights"}).pk, "failed")
    assert "private or gated" in endpoint.message and "hub-token" in endpoint.message
    assert endpoint.pinned_revision in ("", None)
    assert fake_kube.get_object("secrets", NS, "hub-token") is None  # never in a tenant namespace
    public = converge(create_endpoint(alice, "pub").pk, "running")  # a public repository still resolves with it
    assert public.pinned_revision == "1" * 40
    assert fake_kube.get_object("secrets", NS, "hub-token") is None
    secrets = json.dumps(fake_kube.objects("secrets", NS))
    assert base64.b64encode(b"hf_platform_token").decode() not in secrets


def test_item01_the_accounts_own_token_resolves_its_private_repository_and_is_never_read_back(
        alice, alice_api, cluster, fake_kube, fake_hub, settings):
    settings.HF_HUB_TOKEN = None
    fake_hub.repos["alice/private-model"] = {"main": "4" * 40}
    fake_hub.private["alice/private-model"] = "hf_alice_own_token"
    r = alice_api.put("/v2/accounts/alice/hub-token", {"token": "hf_alice_own_token"}, format="json")
    assert r.status_code == 200 and r.json() == {"set": True}, r.json()
    assert alice_api.get("/v2/accounts/alice/hub-token").json() == {"set": True}
    endpoint = converge(create_endpoint(alice, "web", model={"repository": "alice/private-model"}).pk, "running")
    assert endpoint.pinned_revision == "4" * 40
    secret = fake_kube.get_object("secrets", NS, "hub-token")
    assert base64.b64decode(secret["data"]["token"]).decode() == "hf_alice_own_token"
    everything = json.dumps([alice_api.get(p).json() for p in ("/v2/endpoint/alice/web", "/v2/endpoint/alice/web/events",
                                                                "/v2/accounts/alice/hub-token")])
    assert "hf_alice_own_token" not in everything
    assert "hf_alice_own_token" not in json.dumps(list(AuditEvent.objects.values("diff")))
    assert Account.objects.get(slug="alice").hub_token_encrypted and "hf_alice" not in \
        Account.objects.get(slug="alice").hub_token_encrypted


def test_item01_an_operator_grant_lets_the_platform_token_resolve_that_private_repository_for_that_account(
        alice, cluster, fake_kube, fake_hub, settings):
    from controlplane.services import account_hub_repository_grant
    from tests.factories import make_user

    settings.HF_HUB_TOKEN = "hf_platform_token"
    for repo, sha in (("acme/weights", "5"), ("Acme/Other", "6"), ("acme-evil/weights", "7"), ("acmex/weights", "8")):
        fake_hub.repos[repo] = {"main": sha * 40}
        fake_hub.private[repo] = "hf_platform_token"  # the operator's token reads every one of them
    assert account_hub_repository_grant(account=alice.personal_account, repository=" ACME/weights ") == ["acme/weights"]
    granted = converge(create_endpoint(alice, "web", model={"repository": "acme/weights"}).pk, "running")
    assert granted.pinned_revision == "5" * 40
    refused = converge(create_endpoint(alice, "other", model={"repository": "Acme/Other"}).pk, "failed")
    assert "private or gated" in refused.message  # one repository granted, not its owner's others

    # Another account never benefits from alice's grant.
    bob = make_user("bob")
    theirs = converge(create_endpoint(bob, "web", model={"repository": "acme/weights"}).pk, "failed")
    assert "private or gated" in theirs.message and theirs.pinned_revision in ("", None)

    # owner/* grants every repository of that owner, and only of that owner.
    assert account_hub_repository_grant(account=alice.personal_account, repository="acme/*") == ["acme/*",
                                                                                                 "acme/weights"]
    assert converge(create_endpoint(alice, "other2", model={"repository": "Acme/Other"}).pk,
                    "running").pinned_revision == "6" * 40
    for name, repo in (("evil", "acme-evil/weights"), ("acmex", "acmex/weights")):
        assert "private or gated" in converge(create_endpoint(alice, name, model={"repository": repo}).pk,
                                              "failed").message, repo

    # The platform token still never goes into the tenant's namespace.
    assert fake_kube.get_object("secrets", NS, "hub-token") is None
    assert base64.b64encode(b"hf_platform_token").decode() not in json.dumps(fake_kube.objects("secrets", NS))
    assert "hf_platform_token" not in json.dumps(fake_kube.objects("deployments", NS))
    events = AuditEvent.objects.filter(action="account.hub_repository_grant").values_list("target", flat=True)
    assert sorted(events) == ["acme/*", "acme/weights"]


def test_item01_a_tenant_cannot_grant_itself_a_repository(alice, alice_api):
    for body in ({"token": "hf_alice_own_token", "grantedRepositories": ["acme/*"]},
                 {"token": "hf_alice_own_token", "granted_repositories": ["acme/*"]}):
        alice_api.put("/v2/accounts/alice/hub-token", body, format="json")
    for path in ("/v2/accounts/alice", "/v2/accounts/alice/hub-repositories"):
        assert alice_api.put(path, {"grantedRepositories": ["acme/*"]}, format="json").status_code in (404, 405)
    assert Account.objects.get(slug="alice").granted_repositories == []


@pytest.mark.parametrize("repository", ["acme", "acme/", "*/weights", "acme/we*", "acme/weights/x", "a b/c", "*"])
def test_item01_a_repository_grant_outside_the_grammar_is_refused_naming_the_field(alice, repository):
    from controlplane.services import account_hub_repository_grant

    with pytest.raises(InvalidSpec) as refused:
        account_hub_repository_grant(account=alice.personal_account, repository=repository)
    assert "repository" in refused.value.fields
    assert Account.objects.get(slug="alice").granted_repositories == []


def test_item01_only_an_account_admin_sets_its_hub_token_and_bad_tokens_are_400(alice, alice_api):
    from tests.factories import make_org, make_user

    bob = make_user("bob")
    org = make_org("acme", members={alice: "admin", bob: "write"})
    bob_api = api_client(token_create(user=bob, name="b")[1])
    r = bob_api.put(f"/v2/accounts/{org.slug}/hub-token", {"token": "hf_bob_token_x"}, format="json")
    assert r.status_code == 403, r.json()
    expect(alice_api.put("/v2/accounts/alice/hub-token", {"token": "no spaces allowed"},
                         format="json"), 400)
    expect(api_client(token_create(user=bob, name="c")[1]).get("/v2/accounts/alice/hub-token"), 404)
    assert alice_api.delete("/v2/accounts/alice/hub-token").json() == {"set": False}
    assert not Account.objects.get(slug="acme").hub_token_encrypted
