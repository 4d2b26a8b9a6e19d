"""Every change is on record with who, when and a field diff.

Endpoint changes go to the endpoint's own log (EndpointEvent, deleted with the endpoint); quota, token and
membership changes, and endpoint deletions (which outlive the endpoint's log), go to the account's
AuditEvent log. Changes are made the way users and operators make them: the API where there is one,
the services the admin and the management commands call otherwise.
"""

import pytest
from django.utils import timezone

from controlplane.models import AuditEvent
from controlplane.services import membership_remove, membership_set
from endpoints.models import Endpoint, EndpointEvent
from quotas.models import QuotaRequest
from quotas.services import quota_request_decide, quota_set
from tests.factories import endpoint_spec, make_org, make_user
from tests.helpers import expect, user_api

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    alice = make_user("alice")
    return {"alice": alice, "api": user_api(alice), "operator": make_user("operator", is_staff=True),
            "since": timezone.now()}


def assert_recorded(record, actor, since) -> None:
    """Who (the user, and the name kept if the user goes), when, and a field diff of [old, new] pairs."""
    assert record.actor == actor and record.actor_name == actor.username, record
    assert since <= record.created_at <= timezone.now(), record
    assert record.diff and all(isinstance(v, list) and len(v) == 2 for v in record.diff.values()), record.diff


def test_every_endpoint_change_is_an_event_with_actor_time_and_diff(people):
    api, alice, since = people["api"], people["alice"], people["since"]
    expect(api.post("/v2/endpoint/alice", endpoint_spec("audited"), format="json"), 202)
    expect(api.put("/v2/endpoint/alice/audited", {"compute": {"scaling": {"maxReplica": 3}}, "tags": ["a"]},
                   format="json"), 200)
    for action in ("pause", "resume", "scale-to-zero"):
        expect(api.post(f"/v2/endpoint/alice/audited/{action}"), 200, action)
    endpoint = Endpoint.objects.get(name="audited")
    Endpoint.objects.filter(pk=endpoint.pk).update(first_applied_at=timezone.now())  # its objects reached a cluster
    expect(api.delete("/v2/endpoint/alice/audited"), 200)

    events = list(EndpointEvent.objects.filter(endpoint=endpoint).order_by("created_at", "id"))
    assert [e.kind for e in events] == ["create", "update", "pause", "resume", "scaleToZero", "delete"]
    for event in events:
        assert_recorded(event, alice, since)
    create, update, pause, resume, scale, delete = events
    assert create.diff["compute.scaling.maxReplica"] == [None, 1]
    assert update.diff["compute.scaling.maxReplica"] == [1, 3] and update.diff["tags"] == [[], ["a"]]
    assert (update.from_state, update.to_state) == ("pending", "pending")
    # Lifecycle actions diff the intent (what the user asked for) and record the state change beside it.
    assert pause.diff == {"intent": ["run", "pause"]} and (pause.from_state, pause.to_state) == ("pending", "paused")
    assert resume.diff == {"intent": ["pause", "run"]} and resume.to_state == "pending"
    assert scale.diff == {"intent": ["run", "scale_to_zero"]} and scale.to_state == "scaledToZero"
    assert delete.diff == {"intent": ["scale_to_zero", "delete"]} and delete.to_state == "deleting"
    assert [e.generation for e in events] == sorted(e.generation for e in events)

    # The reconciler removes the row once the cluster objects are gone: the events go with it, the
    # account's record of the deletion stays.
    Endpoint.objects.get(pk=endpoint.pk).delete()
    assert not EndpointEvent.objects.filter(endpoint_id=endpoint.pk).exists()
    deletion = AuditEvent.objects.get(action="endpoint.delete", target="audited")
    assert_recorded(deletion, alice, since)
    assert deletion.account == alice.personal_account and deletion.diff == {"state": ["scaledToZero", "deleting"]}


def test_deleting_an_endpoint_that_never_reached_a_cluster_removes_its_events_and_keeps_who_did_it(people):
    api, alice = people["api"], people["alice"]
    expect(api.post("/v2/endpoint/alice", endpoint_spec("brief"), format="json"), 202)
    endpoint_id = Endpoint.objects.get(name="brief").pk
    assert EndpointEvent.objects.filter(endpoint_id=endpoint_id).count() == 1

    expect(api.delete("/v2/endpoint/alice/brief"), 200)
    assert not Endpoint.objects.filter(pk=endpoint_id).exists()
    assert not EndpointEvent.objects.filter(endpoint_id=endpoint_id).exists()
    deletion = AuditEvent.objects.get(action="endpoint.delete", target="brief")
    assert_recorded(deletion, alice, people["since"])
    assert deletion.diff == {"state": ["pending", None]}


def test_quota_changes_requests_and_decisions_are_audited(people):
    api, alice, operator, since = people["api"], people["alice"], people["operator"], people["since"]
    account = alice.personal_account
    quota_set(account=account, accelerator="gpu", limit=8, actor=operator)
    r = api.post("/v2/quotas/alice/requests", {"accelerator": "gpu", "limit": 16, "reason": "training"}, format="json")
    assert r.status_code == 201, r.json()
    quota_request_decide(request_id=QuotaRequest.objects.get().pk, approve=True, actor=operator, note="ok")

    records = list(AuditEvent.objects.filter(account=account, created_at__gte=since).order_by("created_at", "id"))
    assert [(e.action, e.actor) for e in records] == [
        ("quota.set", operator), ("quota_request.create", alice), ("quota.set", operator),
        ("quota_request.approved", operator)]
    for record in records:
        assert_recorded(record, record.actor, since)
    assert records[0].diff == {"limit": [4, 8]} and records[0].target == "gpu"
    assert records[1].diff == {"requestedLimit": [8, 16]}
    assert records[2].diff == {"limit": [8, 16]}
    assert records[3].diff == {"status": ["pending", "approved"]}


def test_token_creation_is_audited(people):
    api, alice, since = people["api"], people["alice"], people["since"]
    token = api.post("/v2/tokens", {"name": "ci", "role": "read"}, format="json").json()
    record = AuditEvent.objects.get(action="token.create", target__endswith=" ci")
    assert_recorded(record, alice, since)
    assert record.diff == {"role": [None, "read"], "expiresAt": [None, None]}
    assert record.target.startswith(token["prefix"])


def test_membership_grants_and_changes_are_audited(people):
    operator, alice, since = people["operator"], people["alice"], people["since"]
    org = make_org("acme")
    membership_set(account=org, user=alice, role="read", actor=operator)
    membership_set(account=org, user=alice, role="write", actor=operator)
    records = list(AuditEvent.objects.filter(account=org, action="membership.set").order_by("created_at", "id"))
    assert [r.diff for r in records] == [{"role": [None, "read"]}, {"role": ["read", "write"]}]
    for record in records:
        assert_recorded(record, operator, since)
        assert record.target == "alice"


def test_token_revocation_is_audited_with_a_diff(people):
    api, alice = people["api"], people["alice"]
    token = api.post("/v2/tokens", {"name": "ci"}, format="json").json()
    expect(api.delete(f"/v2/tokens/{token['id']}"), 200)
    record = AuditEvent.objects.get(action="token.revoke")
    assert record.actor == alice  # who and when are there
    assert_recorded(record, alice, people["since"])


def test_membership_removal_is_audited_with_a_diff(people):
    operator, alice = people["operator"], people["alice"]
    org = make_org("acme")
    membership_set(account=org, user=alice, role="write", actor=operator)
    membership_remove(account=org, user=alice, actor=operator)
    record = AuditEvent.objects.get(action="membership.remove")
    assert record.actor == operator and record.target == "alice"
    assert_recorded(record, operator, people["since"])


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s.example:6443"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: t}}]
current-context: c
"""


def test_cluster_edits_go_through_the_service_validated_and_audited(people):
    from controlplane.errors import DomainError
    from deployments.models import Cluster
    from deployments.services import cluster_register, cluster_update

    east = cluster_register(name="east", vendor="aws", region="us-east-1", kubeconfig_text=KUBECONFIG % "east")
    west = cluster_register(name="west", vendor="aws", region="eu-west-1", kubeconfig_text=KUBECONFIG % "west")
    before = east.updated_at
    cluster_update(cluster=east, changes={"ingress_domain": "ep.example.com"}, actor=people["operator"])
    east.refresh_from_db()
    assert east.ingress_domain == "ep.example.com" and east.updated_at > before
    event = AuditEvent.objects.get(action="cluster.update", target="east")
    assert event.diff == {"ingress_domain": ["", "ep.example.com"]} and event.actor == people["operator"]

    with pytest.raises(DomainError) as refused:
        cluster_update(cluster=west, changes={"region": "us-east-1"}, actor=people["operator"])
    assert (refused.value.status_code, refused.value.code) == (409, "cluster_exists")
    with pytest.raises(DomainError) as refused:
        cluster_update(cluster=west, changes={"namespace_prefix": ""}, actor=people["operator"])
    assert refused.value.fields == {"namespacePrefix": ["invalid or empty"]}
    with pytest.raises(DomainError) as refused:
        cluster_update(cluster=west, changes={"kubeconfig_encrypted": "x"}, actor=people["operator"])
    assert refused.value.fields == {"kubeconfig_encrypted": ["not editable"]}
    assert Cluster.objects.get(name="west").region == "eu-west-1"
    assert AuditEvent.objects.filter(action="cluster.update").count() == 1
