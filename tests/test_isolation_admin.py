"""Tenant isolation, items 15, 17, 18 and 23 of the isolation issue: which secrets each process gets, user
deletion reaching the gateway, the admin (memberships, endpoint deletion, login rate limits), and cookies
and headers. Each test is named after its item and goes through a public interface: `helm template`,
`docker compose config`, a settings import in a fresh interpreter, the Django test client.
"""

import io
import os
import subprocess
import sys

import pytest
import yaml

from tests.helpers import expect
from tests.test_compose import compose, model  # noqa: F401 (compose is a fixture)
from tests.test_helm_chart import CHART, ROOT, containers, find, helm, render, rendered  # noqa: F401 (helm: fixture)

# ---------------------------------------------------------------- item 15: each process only the secrets it reads
SECRET_NAMES = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "SECRETS_ENCRYPTION_KEY",
                "HF_HUB_TOKEN", "GATEWAY_METRICS_TOKEN", "GATEWAY_RECORD_KEY"}
# What each process reads (controlplane/settings.py, gateway/config.py, the Celery beat schedule).
READS = {
    "web": {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "SECRETS_ENCRYPTION_KEY",
            "GATEWAY_RECORD_KEY"},
    "worker": {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "SECRETS_ENCRYPTION_KEY",
               "GATEWAY_RECORD_KEY", "HF_HUB_TOKEN"},
    "watcher": {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRETS_ENCRYPTION_KEY"},
    "beat": {"REDIS_URL", "CELERY_BROKER_URL"},
    "migrate": {"DATABASE_URL"},
    "gateway": {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GATEWAY_METRICS_TOKEN", "GATEWAY_RECORD_KEY"},
}


def secret_env(objects) -> dict[str, dict[str, dict]]:
    """component -> {variable: secretKeyRef} of every workload's containers."""
    found = {}
    for obj in find(objects, "Deployment") + find(objects, "Job"):
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in containers(obj):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.setdefault(component, {})[env["name"]] = ref
            assert not container.get("envFrom", []) or all("secretRef" not in e for e in container["envFrom"])
    return found


@pytest.mark.parametrize("values", ["minimal-values", "ingress-values", "existing-secret-values"])
def test_item15_each_chart_process_gets_only_the_secrets_it_reads(values):
    got = secret_env(rendered(values))
    # Without a record key of its own the gateway derives it from DJANGO_SECRET_KEY: that one key, no other.
    expected = READS | {"gateway": READS["gateway"] | {"DJANGO_SECRET_KEY"}}
    assert {name: set(refs) for name, refs in got.items()} == expected
    assert got["gateway"]["GATEWAY_RECORD_KEY"].get("optional") is True  # the derived key is not in the Secret


def test_item15_a_gateway_with_its_own_record_key_never_gets_the_django_key(helm, tmp_path):  # noqa: F811
    own = yaml.safe_load((CHART / "ci" / "minimal-values.yaml").read_text())
    own["secrets"]["gatewayRecordKey"] = "r" * 40
    existing = {"existingSecret": "controlplane-secrets", "existingSecretHasGatewayRecordKey": True,
                "database": {"existingSecret": "pg", "existingSecretKey": "uri"}}
    for name, values in (("own", own), ("existing", existing)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        got = secret_env(render(helm, CHART, path))
        assert set(got["gateway"]) == READS["gateway"], name
        assert "optional" not in got["gateway"]["GATEWAY_RECORD_KEY"], name  # required: it has no other key
        assert {name: set(refs) for name, refs in got.items() if name != "gateway"} == {
            k: v for k, v in READS.items() if k != "gateway"}


def test_item15_each_chart_process_names_itself_for_the_settings():
    for obj in find(rendered("minimal-values"), "Deployment") + find(rendered("minimal-values"), "Job"):
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = containers(obj)
        assert {"name": "CONTROLPLANE_PROCESS", "value": component} in container["env"], component


def test_item15_each_compose_process_gets_only_the_secrets_it_reads(compose):  # noqa: F811
    services = model(compose)["services"]
    for name, reads in READS.items():
        env = services[name]["environment"]
        assert set(env) & SECRET_NAMES == reads - {"CELERY_BROKER_URL", "GATEWAY_METRICS_TOKEN"}, name
        assert env["CONTROLPLANE_PROCESS"] == name
    keys = {services[name]["environment"]["GATEWAY_RECORD_KEY"] for name in ("web", "worker", "gateway")}
    assert len(keys) == 1 and len(keys.pop()) >= 32  # one record key shared by the signers and the gateway


def settings_in_production(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "GATEWAY_", "SECRETS_", "CONTROLPLANE_"))}
    full |= {"DJANGO_DEBUG": "false", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=60)


def test_item15_processes_start_with_only_their_own_secrets():
    record = "r" * 40
    gateway = settings_in_production("from gateway.config import from_settings; c = from_settings(); "
                                     "print(c.record_key.decode())", CONTROLPLANE_PROCESS="gateway",
                                     GATEWAY_RECORD_KEY=record)
    assert gateway.returncode == 0, gateway.stderr
    assert gateway.stdout.strip() == record
    # Derived from the Django key when the gateway has no record key of its own: the same as the signers'.
    derive = "from controlplane import settings as s; print(s.GATEWAY_RECORD_KEY)"
    signer = settings_in_production(derive, DJANGO_SECRET_KEY="k" * 50, SECRETS_ENCRYPTION_KEY="e" * 50)
    derived = settings_in_production(derive, CONTROLPLANE_PROCESS="gateway", DJANGO_SECRET_KEY="k" * 50)
    assert derived.returncode == 0 and derived.stdout == signer.stdout and len(signer.stdout.strip()) == 64
    refused = settings_in_production(derive, CONTROLPLANE_PROCESS="gateway")
    assert refused.returncode != 0 and "GATEWAY_RECORD_KEY" in refused.stderr
    # Beat and migrate need no key, and get none: Django refuses to sign with the empty SECRET_KEY.
    for process in ("beat", "migrate"):
        code = ("import django; django.setup(); from django.conf import settings as s; "
                "print(repr(s.SECRETS_ENCRYPTION_KEY), repr(s.GATEWAY_RECORD_KEY)); "
                "from django.core import signing; signing.dumps(1)")
        result = settings_in_production(code, CONTROLPLANE_PROCESS=process, DJANGO_SETTINGS_MODULE="controlplane.settings")
        assert result.stdout.strip() == "'' ''", (process, result.stderr)
        assert result.returncode != 0 and "SECRET_KEY" in result.stderr, process
    # Web and worker still refuse to start without both keys; a misspelt process name is refused.
    for process in ("web", "worker"):
        result = settings_in_production(derive, CONTROLPLANE_PROCESS=process, DJANGO_SECRET_KEY="k" * 50)
        assert result.returncode != 0 and "SECRETS_ENCRYPTION_KEY" in result.stderr, process
    wrong = settings_in_production(derive, CONTROLPLANE_PROCESS="gatway", DJANGO_SECRET_KEY="k" * 50,
                                   SECRETS_ENCRYPTION_KEY="e" * 50)
    assert wrong.returncode != 0 and "CONTROLPLANE_PROCESS" in wrong.stderr


# ---------------------------------------------------------------- item 17: deletions reach the gateway
def stored(kind: str, key: str):
    """(version, record) as Redis holds it now, the signature checked; None when there is no record."""
    import redis
    from django.conf import settings

    from controlplane import records

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        raw = client.get(records.record_key(settings.GATEWAY_REDIS_PREFIX, kind, key))
        ttl = client.ttl(records.record_key(settings.GATEWAY_REDIS_PREFIX, kind, key))
        if raw is None:
            return None
        return (*records.parse_stored(raw, f"{kind}:{key}", signing_key=settings.GATEWAY_RECORD_KEY.encode()), ttl)
    finally:
        client.close()


@pytest.mark.django_db
def test_item17_a_user_deleted_outside_the_admin_loses_gateway_access_at_once(gateway_prefix, settings,
                                                                              django_capture_on_commit_callbacks):
    from controlplane.models import ApiToken
    from controlplane.selectors import token_digest
    from tests.factories import make_org, make_token, make_user

    with django_capture_on_commit_callbacks(execute=True):
        alice, bob = make_user("alice"), make_user("bob")
        acme = make_org("acme", members={alice: "write"})
        digest = token_digest(make_token(alice))
        other = token_digest(make_token(bob))
    assert stored("token", digest)[1] == {"user": alice.pk, "expires": None, "revoked": False}
    assert stored("grant", f"{acme.pk}:{alice.pk}")[1] == {"role": "write"}

    alice_id = alice.pk
    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()  # the ORM, not the admin: the cascade takes her tokens and memberships
    assert stored("token", digest)[1] is None  # published as absent: the gateway refuses it now
    assert stored("grant", f"{acme.pk}:{alice_id}")[1] == {"role": None}  # no role in acme any more

    with django_capture_on_commit_callbacks(execute=True):
        ApiToken.objects.filter(user=bob).delete()  # a token deleted on its own
    assert stored("token", other)[1] is None


@pytest.mark.django_db
def test_item17_every_record_expires(gateway_prefix, settings, django_capture_on_commit_callbacks):
    from controlplane.selectors import token_digest
    from tests.factories import make_token, make_user

    with django_capture_on_commit_callbacks(execute=True):
        digest = token_digest(make_token(make_user("carol")))
    ttl = stored("token", digest)[2]
    assert 0 < ttl <= settings.GATEWAY_RECORD_TTL_SECONDS
    code = "from controlplane import settings"
    for name, value in (("GATEWAY_RECORD_TTL_SECONDS", "0"), ("GATEWAY_RECORD_TTL_SECONDS", "-1"),
                        ("GATEWAY_RECORD_TTL_SECONDS", "100000000"), ("GATEWAY_CACHE_MAX_AGE_SECONDS", "100000"),
                        ("GATEWAY_STALE_SECONDS", "100000000")):
        result = settings_in_production(code, DJANGO_SECRET_KEY="k" * 50, SECRETS_ENCRYPTION_KEY="e" * 50,
                                        **{name: value})
        assert result.returncode != 0 and name in result.stderr, (name, value)


# ---------------------------------------------------------------- item 18: the admin
WHEN = {"created_at_0": "2026-01-01", "created_at_1": "00:00:00"}  # the admin's split date-time field


def operator_client(client):
    from tests.factories import make_user

    operator = make_user("ops", is_staff=True, password="pw")
    client.force_login(operator)
    return operator


@pytest.mark.django_db
def test_item18_reassigning_a_membership_in_the_admin_moves_it(client, gateway_prefix,
                                                              django_capture_on_commit_callbacks):
    from controlplane.models import AuditEvent, Membership
    from tests.factories import make_org, make_user

    operator_client(client)
    bob, carol, dora = make_user("bob"), make_user("carol"), make_user("dora")
    acme, guild = make_org("acme", members={bob: "write"}), make_org("guild")
    membership = Membership.objects.get(account=acme, user=bob)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/admin/controlplane/membership/{membership.pk}/change/",
                        {"account": acme.pk, "user": carol.pk, "role": "read", **WHEN})
    assert r.status_code == 302, r.content[:2000]
    assert set(Membership.objects.values_list("account__slug", "user__username", "role")) == {("acme", "carol", "read")}
    assert stored("grant", f"{acme.pk}:{bob.pk}")[1] == {"role": None}  # bob's access is withdrawn at once
    assert stored("grant", f"{acme.pk}:{carol.pk}")[1] == {"role": "read"}
    assert AuditEvent.objects.filter(action="membership.remove", target="bob").exists()

    # To another organisation, from that organisation's page (the inline) too.
    membership = Membership.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/admin/controlplane/membership/{membership.pk}/change/",
                        {"account": guild.pk, "user": carol.pk, "role": "read", **WHEN})
    assert r.status_code == 302, r.content
    assert set(Membership.objects.values_list("account__slug", "user__username")) == {("guild", "carol")}
    membership = Membership.objects.get()
    form = {"memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "1", "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000", "memberships-0-id": str(membership.pk),
            "memberships-0-account": str(guild.pk), "memberships-0-user": str(dora.pk), "memberships-0-role": "admin",
            **{f"memberships-0-{key}": value for key, value in WHEN.items()}}
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/admin/controlplane/account/{guild.pk}/change/", form)
    assert r.status_code == 302, r.content[:2000]
    assert set(Membership.objects.values_list("account__slug", "user__username", "role")) == {("guild", "dora", "admin")}
    assert stored("grant", f"{guild.pk}:{carol.pk}")[1] == {"role": None}

    # A personal account has no members: the admin offers none, and refuses one (a form error, never a 500).
    membership = Membership.objects.get()
    r = client.post(f"/admin/controlplane/membership/{membership.pk}/change/",
                    {"account": bob.personal_account.pk, "user": dora.pk, "role": "read", **WHEN})
    assert r.status_code == 200 and b"Select a valid choice" in r.content, r.content
    expect(client.get(f"/admin/controlplane/account/{bob.personal_account.pk}/change/"), 200)


@pytest.mark.django_db
def test_item18_deleting_endpoints_in_the_admin_goes_through_the_service(client, gateway_prefix,
                                                                        django_capture_on_commit_callbacks):
    from django.utils import timezone

    from controlplane.models import AuditEvent
    from endpoints.models import Endpoint
    from endpoints.services import endpoint_create
    from tests.factories import endpoint_spec, make_user

    operator_client(client)
    alice = make_user("alice")
    made = [endpoint_create(account=alice.personal_account, actor=alice, spec=endpoint_spec(f"e{i}")) for i in range(4)]
    # Two reached a cluster: their objects must be removed by the reconciler before the row goes.
    Endpoint.objects.filter(pk__in=[made[1].pk, made[3].pk]).update(first_applied_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/admin/endpoints/endpoint/{made[0].pk}/delete/", {"post": "yes"})
    assert r.status_code == 302, r.content
    r = client.post(f"/admin/endpoints/endpoint/{made[1].pk}/delete/", {"post": "yes"})
    assert r.status_code == 302, r.content
    r = client.post("/admin/endpoints/endpoint/", {"action": "delete_selected", "post": "yes",
                                                   "_selected_action": [made[2].pk, made[3].pk]})
    assert r.status_code == 302, r.content
    left = dict(Endpoint.objects.values_list("name", "state"))
    assert left == {"e1": "deleting", "e3": "deleting"}  # never a raw row delete behind the reconciler's back
    assert set(AuditEvent.objects.filter(action="endpoint.delete").values_list("target", flat=True)) == {
        "e0", "e1", "e2", "e3"}
    assert stored("route", _host("alice", "e0"))[1] is None  # its route withdrawn from the gateway


def _host(account: str, name: str) -> str:
    from controlplane.names import host_id

    return host_id(account, name)


def login(client, username: str, password: str, address: str):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password},
                       REMOTE_ADDR=address)


@pytest.mark.django_db
def test_item18_admin_logins_are_rate_limited_per_username_and_per_address(client, settings):
    import uuid

    from tests.factories import make_user

    settings.ADMIN_LOGIN_MAX_FAILURES_PER_USER, settings.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS = 3, 5
    run = uuid.uuid4().hex[:8]  # the counters live in the shared Redis: names of this run's own
    name = f"ops{run}"
    make_user(name, is_staff=True, password="right-password")
    address = f"10.{int(run[:2], 16)}.{int(run[2:4], 16)}.1"

    for _ in range(3):
        r = login(client, name, "wrong", address)
        assert r.status_code == 200 and b"Please enter the correct username and password" in r.content, r.content
    r = login(client, name, "right-password", f"{address[:-1]}2")  # locked out, from any address
    assert r.status_code == 200 and b"Too many failed login attempts" in r.content, r.content
    assert "_auth_user_id" not in client.session
    r = login(client, name.upper(), "right-password", f"{address[:-1]}3")  # the same username, however typed
    assert b"Too many failed login attempts" in r.content

    # Per address: failures for any usernames add up.
    other = f"{address[:-1]}9"
    for i in range(5):
        assert b"Too many" not in login(client, f"nobody{i}{run}", "wrong", other).content
    victim = f"dora{run}"
    make_user(victim, is_staff=True, password="pw-dora")
    r = login(client, victim, "pw-dora", other)
    assert r.status_code == 200 and b"Too many failed login attempts" in r.content, r.content
    r = login(client, victim, "pw-dora", f"{address[:-1]}8")  # from elsewhere the right password works
    assert r.status_code == 302 and client.session["_auth_user_id"], r.content


def test_item18_login_limit_settings_have_production_safe_defaults():
    code = ("from controlplane import settings as s; "
            "print(s.ADMIN_LOGIN_MAX_FAILURES_PER_USER, s.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS, "
            "s.ADMIN_LOGIN_WINDOW_SECONDS)")
    keys = {"DJANGO_SECRET_KEY": "k" * 50, "SECRETS_ENCRYPTION_KEY": "e" * 50}
    result = settings_in_production(code, **keys)
    assert result.stdout.split() == ["5", "20", "900"], result.stderr
    refused = settings_in_production(code, **keys, ADMIN_LOGIN_MAX_FAILURES_PER_USER="0")
    assert refused.returncode != 0 and "ADMIN_LOGIN_MAX_FAILURES_PER_USER" in refused.stderr


# ---------------------------------------------------------------- item 23: cookies and headers
def test_item23_secure_cookies_and_hsts_behind_a_tls_proxy_only(compose, collected_static):  # noqa: F811
    code = ("import django; django.setup(); from django.test import Client; c = Client(); "
            "r = c.get('/admin/login/', HTTP_X_FORWARDED_PROTO='https', HTTP_HOST='localhost'); "
            "from django.conf import settings as s; "
            "print(r.status_code, s.SESSION_COOKIE_SECURE, r.cookies['csrftoken']['secure'] == True, "
            "r.headers.get('Strict-Transport-Security'))")
    env = {"DJANGO_SECRET_KEY": "k" * 50, "SECRETS_ENCRYPTION_KEY": "e" * 50, "DJANGO_ALLOWED_HOSTS": "localhost",
           "DJANGO_SETTINGS_MODULE": "controlplane.settings", "DJANGO_STATIC_ROOT": str(collected_static)}
    behind = settings_in_production(code, **env, DJANGO_BEHIND_TLS_PROXY="true")
    assert behind.stdout.split() == ["200", "True", "True", "max-age=31536000"], behind.stderr
    local = settings_in_production(code, **env, DJANGO_BEHIND_TLS_PROXY="false")
    assert local.stdout.split() == ["200", "False", "False", "None"], local.stderr
    # On in the chart's defaults (TLS ends at its Ingress), off for docker compose's local http.
    (configmap,) = find(rendered("minimal-values"), "ConfigMap")
    assert configmap["data"]["DJANGO_BEHIND_TLS_PROXY"] == "true"
    assert model(compose)["services"]["web"]["environment"]["DJANGO_BEHIND_TLS_PROXY"] == "false"


@pytest.mark.django_db
def test_item23_no_third_party_script_runs_on_the_admin_origin(client):
    import re

    from controlplane.middleware import CONTENT_SECURITY_POLICY

    operator_client(client)
    for page in ("/admin/", "/admin/login/", "/admin/controlplane/account/", "/v2/tokens"):
        r = client.get(page, HTTP_ACCEPT="text/html")
        policy = r.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "default-src 'self'" in policy, page
        assert not re.search(rb"<script[^>]+src=[\"']?(https?:)?//", r.content), page
    # The API docs too: Swagger UI and Redoc are our own static files, under the same policy as the admin
    # (tests/test_static_files.py loads every file they reference).
    for page in ("/api/docs/", "/api/redoc/"):
        r = client.get(page)
        assert r.status_code == 200, (page, r.content)
        assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, page
        assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", r.content), page  # no inline script to refuse
        assert not re.search(rb"(src|href)=[\"']?(https?:)?//", r.content), page
    # Nothing in the project's own templates or static files pulls a script from elsewhere.
    for path in ROOT.glob("*/templates/**/*.html"):
        assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", path.read_text()), path


@pytest.mark.django_db
def test_item01_item02_operators_set_a_hub_token_and_grant_registries_in_the_admin(client):
    from controlplane.models import Account
    from controlplane.selectors import account_hub_token
    from tests.factories import make_user

    operator_client(client)
    make_user("carol")
    page = f"/admin/controlplane/account/{Account.objects.get(slug='carol').pk}/change/"
    form = {"hub_token": "hf_carol_token", "registries": "123456789012.dkr.ecr.us-east-1.amazonaws.com\n"}
    r = client.post(page, form)
    assert r.status_code == 302, r.content[:500]
    account = Account.objects.get(slug="carol")
    assert account_hub_token(account=account) == "hf_carol_token"
    assert account.granted_registries == ["123456789012.dkr.ecr.us-east-1.amazonaws.com"]
    shown = client.get(page).content.decode()
    assert "hf_carol_token" not in shown and "A token is set." in shown
    r = client.post(page, {"hub_token": "", "registries": "not a host!"})
    assert r.status_code == 200 and "Not a registry host" in r.content.decode(), r.content  # a form error, never a 500
    expect(client.post(page, {"clear_hub_token": "on", "registries": ""}), 302)
    account = Account.objects.get(slug="carol")
    assert account_hub_token(account=account) is None and account.granted_registries == []


@pytest.mark.django_db
def test_item01_operators_grant_hub_repositories_in_the_admin_and_with_a_command(client):
    from django.core.management import CommandError, call_command

    from controlplane.models import Account, AuditEvent
    from tests.factories import make_user

    operator_client(client)
    make_user("carol")
    page = f"/admin/controlplane/account/{Account.objects.get(slug='carol').pk}/change/"
    r = client.post(page, {"repositories": "Acme/Weights\nresearch/*\n\n", "registries": ""})
    assert r.status_code == 302, r.content[:500]
    assert Account.objects.get(slug="carol").granted_repositories == ["acme/weights", "research/*"]
    assert "research/*" in client.get(page).content.decode()
    r = client.post(page, {"repositories": "acme/weights\nnot a repo", "registries": ""})
    assert r.status_code == 200 and "Not a Hub repository" in r.content.decode()  # a form error, never a 500
    assert Account.objects.get(slug="carol").granted_repositories == ["acme/weights", "research/*"]
    assert client.post(page, {"repositories": "research/*", "registries": ""}).status_code == 302
    assert Account.objects.get(slug="carol").granted_repositories == ["research/*"]
    audited = AuditEvent.objects.filter(action__startswith="account.hub_repository_")
    assert sorted(audited.values_list("action", "target")) == [
        ("account.hub_repository_grant", "acme/weights"), ("account.hub_repository_grant", "research/*"),
        ("account.hub_repository_revoke", "acme/weights")]
    assert {event.actor.username for event in audited} == {"ops"}

    out = io.StringIO()
    call_command("grant_repository", "carol", "acme/weights", stdout=out)
    assert out.getvalue().split() == ["acme/weights", "research/*"]
    call_command("grant_repository", "carol", "research/*", "--revoke", stdout=io.StringIO())
    assert Account.objects.get(slug="carol").granted_repositories == ["acme/weights"]
    for args in (("carol", "acme"), ("nobody", "acme/weights")):
        with pytest.raises(CommandError):
            call_command("grant_repository", *args)
