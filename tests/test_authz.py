"""Authorisation matrix: every operation × every kind of caller, with the status each must get.

The endpoint lives in organisation ``acme``. Org roles are respected, a read token never writes, another
tenant sees 404 (not 403), and missing, revoked or expired tokens are 401.
"""

import pytest

from endpoints.models import Endpoint
from tests.factories import endpoint_spec, make_org, make_token, make_user
from tests.helpers import api_client, expect, user_api

EP = "/v2/endpoint/acme/shared"

OPERATIONS = {
    "list": ("get", "/v2/endpoint/acme", None),
    "get": ("get", EP, None),
    "events": ("get", f"{EP}/events", None),
    "provider": ("get", "/v2/provider/acme", None),
    "quota": ("get", "/v2/quotas/acme", None),
    "create": ("post", "/v2/endpoint/acme", endpoint_spec("fresh")),
    "update": ("put", EP, {"compute": {"scaling": {"maxReplica": 2}}}),
    "pause": ("post", f"{EP}/pause", None),
    "resume": ("post", f"{EP}/resume", None),  # after a pause, so a permitted caller gets 200
    "scale-to-zero": ("post", f"{EP}/scale-to-zero", None),
    "delete": ("delete", EP, None),
    "quota-request": ("post", "/v2/quotas/acme/requests", {"accelerator": "gpu", "limit": 8, "reason": "launch"}),
}
READS = {"list", "get", "events", "provider", "quota"}
OK = {"create": 202, "quota-request": 201}

# caller -> (reads, writes, admin-only writes)
EXPECTED = {
    "org_admin": (200, "ok", "ok"),
    "org_writer": (200, "ok", 403),
    "org_reader": (200, 403, 403),
    "writer_read_token": (200, 403, 403),
    "other_user": (404, 404, 404),
    "anonymous": (401, 401, 401),
    "revoked_token": (401, 401, 401),
    "expired_token": (401, 401, 401),
}


@pytest.fixture
def world(db):
    admin, writer, reader, other = (make_user(n) for n in ("ada", "wes", "rex", "oscar"))
    org = make_org("acme", members={admin: "admin", writer: "write", reader: "read"})
    from endpoints.services import endpoint_create, endpoint_pause

    endpoint_create(account=org, spec=endpoint_spec("shared"), actor=writer)
    return {
        "org": org, "endpoint_pause": endpoint_pause, "writer": writer,
        "tokens": {
            "org_admin": make_token(admin),
            "org_writer": make_token(writer),
            "org_reader": make_token(reader),
            "writer_read_token": make_token(writer, role="read"),
            "other_user": make_token(other),
            "anonymous": None,
            "revoked_token": make_token(writer, revoked=True),
            "expired_token": make_token(writer, expired=True),
        },
    }


@pytest.mark.parametrize("caller", list(EXPECTED))
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_authorisation_matrix(world, caller, operation):
    if operation == "resume":
        world["endpoint_pause"](account=world["org"], name="shared", actor=world["writer"])
    method, path, body = OPERATIONS[operation]
    reads, writes, admin_writes = EXPECTED[caller]
    expected = reads if operation in READS else admin_writes if operation == "quota-request" else writes
    if expected == "ok":
        expected = OK.get(operation, 200)
    before = list(Endpoint.objects.values_list("name", "generation", "state"))

    r = getattr(api_client(world["tokens"][caller]), method)(path, body, format="json")

    assert r.status_code == expected, (caller, operation, r.json())
    if expected < 400:
        assert "error" not in r.json(), r.json()
    if expected >= 400:
        assert set(r.json()) >= {"error", "code"} and r.json()["error"], r.json()
        assert list(Endpoint.objects.values_list("name", "generation", "state")) == before, "nothing written"
    if expected == 403:
        assert r.headers["X-Error-Message"] == r.json()["error"]
    if expected == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_personal_namespace_of_another_user_is_404(db):
    alice, bob = make_user("alice"), make_user("bob")
    from endpoints.services import endpoint_create

    endpoint_create(account=alice.personal_account, spec=endpoint_spec("mine"), actor=alice)
    bob_api = user_api(bob)
    expect(bob_api.get("/v2/endpoint/alice/mine"), 404)
    expect(bob_api.get("/v2/endpoint/alice"), 404)
    expect(bob_api.get("/v2/endpoint/nobody"), 404)
    assert bob_api.get("/v2/endpoint/bob").json() == {"items": []}


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer not-a-token", "Basic YTpi"])
def test_malformed_or_unknown_credentials_are_401(db, header):
    r = api_client(authorization=header).get("/api/whoami-v2")
    assert r.status_code == 401, r.content
    assert r.json()["code"] == "unauthenticated" and r.headers["WWW-Authenticate"].startswith("Bearer"), r.json()


def test_token_last_used_is_recorded(db):
    from controlplane.models import ApiToken

    user = make_user("lu")
    secret = make_token(user)
    assert ApiToken.objects.get().last_used_at is None
    expect(api_client(secret).get("/api/whoami-v2"), 200)
    assert ApiToken.objects.get().last_used_at is not None
