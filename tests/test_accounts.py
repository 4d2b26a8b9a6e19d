"""Accounts, tokens, whoami, operator commands, probes, the schema and the admin."""

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from controlplane.models import Account, ApiToken, AuditEvent, Membership
from tests.factories import make_org, make_token, make_user
from tests.helpers import api_client, expect, user_api


def test_whoami_in_hub_shape(db):
    alice = make_user("alice", email="a@example.com")
    make_org("acme", members={alice: "write"})
    make_org("zeta", members={alice: "read"})
    body = user_api(alice, role="read").get("/api/whoami-v2").json()
    assert body["type"] == "user" and body["name"] == "alice" and body["email"] == "a@example.com"
    assert body["orgs"] == [{"type": "org", "name": "acme", "roleInOrg": "write"},
                            {"type": "org", "name": "zeta", "roleInOrg": "read"}]
    assert body["auth"]["accessToken"]["role"] == "read"


def test_whoami_without_token_is_401_in_error_shape(client):
    r = client.get("/api/whoami-v2")
    assert r.status_code == 401, r.content
    assert r.json() == {"error": "A valid user or organization token, sent as a Bearer, is required",
                        "code": "unauthenticated"}


def test_token_api_create_list_revoke(db):
    alice = make_user("alice")
    api = user_api(alice)
    expires = (timezone.now() + timedelta(days=1)).isoformat()
    r = api.post("/v2/tokens", {"name": "ci", "role": "read", "expiresAt": expires}, format="json")
    assert r.status_code == 201, r.json()
    secret = r.json()["token"]
    assert secret.startswith("cpt_") and r.json()["prefix"] == secret[:10]
    stored = ApiToken.objects.get(name="ci")
    assert secret not in (stored.digest, stored.prefix) and len(stored.digest) == 64
    listed = api.get("/v2/tokens").json()["items"]
    assert {t["name"] for t in listed} >= {"ci"} and all("token" not in t for t in listed)
    assert secret not in json.dumps(listed)
    new = api_client(secret)
    expect(new.get("/api/whoami-v2"), 200)
    expect(new.post("/v2/tokens", {"name": "x"}, format="json"), 403)  # read token
    r = api.delete(f"/v2/tokens/{stored.pk}")
    assert r.status_code == 200 and r.json()["revokedAt"].endswith("Z"), r.content
    expect(new.get("/api/whoami-v2"), 401)
    assert AuditEvent.objects.filter(action="token.revoke").count() == 1
    assert secret not in json.dumps(list(AuditEvent.objects.values("diff", "target")))


def test_token_api_rejects_bad_input_and_foreign_tokens(db):
    alice, bob = make_user("alice"), make_user("bob")
    api = user_api(alice)
    bob_token = ApiToken.objects.create(user=bob, name="b", digest="0" * 64, prefix="cpt_x")
    expect(api.delete(f"/v2/tokens/{bob_token.pk}"), 404)
    r = api.post("/v2/tokens", {"name": "", "role": "root", "expiresAt": "yesterday"}, format="json")
    assert r.status_code == 400 and {"name", "role", "expiresAt"} <= set(r.json()["fields"]), r.content
    past = (timezone.now() - timedelta(days=1)).isoformat()
    r = api.post("/v2/tokens", {"name": "old", "expiresAt": past}, format="json")
    assert r.status_code == 400 and "expiresAt" in r.json()["fields"], r.content


def test_operator_commands_print_only_the_value(db, capsys):
    call_command("create_user", "dora", "--email", "d@example.com", "--staff")
    assert capsys.readouterr().out.strip() == "dora"
    call_command("create_user", "erin")
    capsys.readouterr()
    call_command("create_org", "guild", "--member", "dora:admin", "--member", "erin:read")
    assert capsys.readouterr().out.strip() == "guild"
    assert dict(Membership.objects.values_list("user__username", "role")) == {"dora": "admin", "erin": "read"}
    call_command("create_token", "erin", "--role", "read", "--name", "laptop")
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("cpt_")
    expect(api_client(secret).get("/v2/endpoint/guild"), 200)
    assert Account.objects.get(slug="dora").kind == "user"
    with pytest.raises(CommandError, match="already taken"):
        call_command("create_user", "guild")
    with pytest.raises(CommandError, match="No user"):
        call_command("create_token", "nobody")
    with pytest.raises(CommandError):
        call_command("create_org", "bad org!")
    for taken_shape in ("Acme", "acme.io", "a_b", "x" * 41):  # namespaces are lowercase DNS labels
        with pytest.raises(CommandError, match="lowercase"):
            call_command("create_org", taken_shape)


def test_new_accounts_get_default_quotas(db, settings):
    user = make_user("q")
    assert dict(user.personal_account.quotas.values_list("accelerator", "limit")) == {
        "cpu": settings.DEFAULT_QUOTA_CPU, "gpu": settings.DEFAULT_QUOTA_GPU, "neuron": settings.DEFAULT_QUOTA_NEURON}


def test_membership_changes_are_audited(db):
    from controlplane.services import membership_remove, membership_set

    owner, dev = make_user("own"), make_user("dev")
    org = make_org("acme")
    membership_set(account=org, user=dev, role="read", actor=owner)
    membership_set(account=org, user=dev, role="write", actor=owner)
    membership_remove(account=org, user=dev, actor=owner)
    trail = list(AuditEvent.objects.filter(account=org, action__startswith="membership").order_by("id")
                 .values_list("action", "diff", "actor_name"))
    assert trail == [("membership.set", {"role": [None, "read"]}, "own"),
                     ("membership.set", {"role": ["read", "write"]}, "own"),
                     ("membership.remove", {"role": ["write", None]}, "own")]


def test_probes(db, client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "broker": "ok"}, r.content
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and b"controlplane_endpoints_unconverged" in metrics.content, metrics.content


def test_readyz_reports_a_dead_broker(db, client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["broker"].startswith("unavailable"), r.content


def test_unknown_path_is_404_in_error_shape(client):
    r = client.get("/v2/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.content


def test_openapi_schema_is_valid_and_covers_every_operation(db, client):
    from openapi_spec_validator import validate

    r = client.get("/api/schema/?format=json")
    assert r.status_code == 200, r.content
    schema = r.json()
    validate(schema)
    operation_ids = {op["operationId"] for item in schema["paths"].values() for op in item.values()
                     if isinstance(op, dict) and "operationId" in op}
    assert {"endpoint_list", "endpoint_create", "endpoint_get", "endpoint_update", "endpoint_delete",
            "endpoint_pause", "endpoint_resume", "endpoint_scale_to_zero", "endpoint_events", "whoami",
            "provider_list", "quota_get", "quota_request_create", "token_create", "token_revoke"} <= operation_ids
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op and path != "/api/schema/":
                assert "401" in op["responses"], (path, method)
    expect(client.get("/api/docs/"), 200)


def test_admin_pages_render_without_secrets(db, client):
    from endpoints.services import endpoint_create
    from tests.factories import endpoint_spec

    operator = make_user("root", is_staff=True, password="pw")
    alice = make_user("alice")
    secret = make_token(alice)
    endpoint = endpoint_create(account=alice.personal_account, actor=alice,
                               spec=endpoint_spec("e1", model={"secrets": {"K": "planted-secret-value"}}))
    client.force_login(operator)
    pages = ["/admin/", "/admin/controlplane/account/", "/admin/controlplane/apitoken/",
             f"/admin/controlplane/apitoken/{ApiToken.objects.get(user=alice).pk}/change/",
             "/admin/endpoints/endpoint/?state__exact=pending", f"/admin/endpoints/endpoint/{endpoint.pk}/change/",
             "/admin/quotas/instancetype/?accelerator=gpu", "/admin/quotas/quotarequest/",
             "/admin/controlplane/auditevent/"]
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, (page, r.content)
        assert secret.encode() not in r.content and b"planted-secret-value" not in r.content, page
