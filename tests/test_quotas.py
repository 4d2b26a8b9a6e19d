"""Quotas: the catalog, every admission path, the provider and quota APIs, and admission under races.

The race tests use real, separate Postgres connections (one thread each, started together at a barrier)
through the whole HTTP stack; the account row lock must let exactly as many through as fit.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.db import connection

from controlplane.models import AuditEvent
from endpoints.models import Endpoint
from endpoints.quota import quota_usage
from quotas.models import InstanceType, QuotaRequest
from quotas.services import quota_request_decide, quota_set
from tests.factories import endpoint_spec, make_org, make_token, make_user
from tests.helpers import api_client, expect, user_api


def create(api, name, ns="alice", **overrides):
    return api.post(f"/v2/endpoint/{ns}", endpoint_spec(name, **overrides), format="json")


# ---------------------------------------------------------------- catalog
def test_catalog_is_seeded_from_the_price_table(db):
    assert InstanceType.objects.filter(vendor="aws", region="us-east-1", instance_type="intel-spr").count() == 5
    l4 = InstanceType.objects.get(vendor="aws", region="us-east-1", instance_type="nvidia-l4", instance_size="x1")
    assert (l4.accelerator, l4.accelerator_count, l4.accelerator_memory_gb, float(l4.price_per_hour)) == \
           ("gpu", 1, 24, 0.8)
    assert l4.accelerator_resource == "nvidia.com/gpu" and l4.tolerations
    assert set(InstanceType.objects.filter(instance_type="intel-icl").values_list("status", flat=True)) == {"deprecated"}
    assert InstanceType.objects.get(vendor="gcp", instance_type="nvidia-a100", instance_size="x8").status == "reserved"
    assert set(InstanceType.objects.values_list("vendor", "region").distinct()) == {
        ("aws", "us-east-1"), ("aws", "eu-west-1"), ("azure", "eastus"), ("gcp", "us-east4")}


def test_not_available_instance_is_refused(alice_api):
    InstanceType.objects.filter(instance_type="intel-spr", vendor="aws").update(status="not_available")
    r = create(alice_api, "x")
    assert r.status_code == 400 and "compute.instanceType" in r.json()["fields"], r.content
    InstanceType.objects.filter(instance_type="intel-spr", vendor="aws").update(status="low_availability")
    expect(create(alice_api, "x"), 202)


# ---------------------------------------------------------------- admission paths
def test_create_over_quota_is_403_naming_everything(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=5)
    expect(create(alice_api, "a", compute={"scaling": {"maxReplica": 2}}), 202)  # 4 vCPUs
    r = create(alice_api, "b")  # needs 2 more
    assert r.status_code == 403, r.content
    body = r.json()
    assert body["code"] == "quota_exceeded"
    assert all(part in body["error"] for part in ("cpu", "limit 5", "in use 4", "needs 2"))
    assert r.headers["X-Error-Message"] == body["error"]
    assert (body["limit"], body["usage"], body["need"]) == (5, 4, 2)
    assert list(Endpoint.objects.values_list("name", flat=True)) == ["a"]


def test_gpu_quota_counts_devices(alice, alice_api):
    gpu = {"accelerator": "gpu", "instanceType": "nvidia-l4", "instanceSize": "x4"}
    quota_set(account=alice.personal_account, accelerator="gpu", limit=4)
    expect(create(alice_api, "g", compute=gpu), 202)
    assert quota_usage(account=alice.personal_account) == {"cpu": 0, "gpu": 4, "neuron": 0}
    r = create(alice_api, "h", compute={**gpu, "instanceSize": "x1"})
    assert r.status_code == 403 and "gpu" in r.json()["error"], r.content


def test_update_changing_replicas_or_instance_is_admitted(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=8)
    create(alice_api, "a")  # 2 vCPUs
    ok = alice_api.put("/v2/endpoint/alice/a", {"compute": {"scaling": {"maxReplica": 4}}}, format="json")
    assert ok.status_code == 200, ok.content  # 8 of 8
    r = alice_api.put("/v2/endpoint/alice/a", {"compute": {"instanceSize": "x4"}}, format="json")
    assert r.status_code == 403 and r.json()["code"] == "quota_exceeded", r.content  # 4 x 4 = 16
    assert Endpoint.objects.get().instance.instance_size == "x2"
    lower = alice_api.put("/v2/endpoint/alice/a", {"compute": {"scaling": {"maxReplica": 1}}}, format="json")
    assert lower.status_code == 200, lower.content
    assert quota_usage(account=alice.personal_account)["cpu"] == 2


def test_pause_frees_quota_at_once_and_resume_readmits(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=2)
    create(alice_api, "a")
    expect(create(alice_api, "b"), 403)
    expect(alice_api.post("/v2/endpoint/alice/a/pause"), 200)
    assert quota_usage(account=alice.personal_account)["cpu"] == 0
    expect(create(alice_api, "b"), 202)
    r = alice_api.post("/v2/endpoint/alice/a/resume")
    assert r.status_code == 403 and r.json()["code"] == "quota_exceeded", r.content
    assert Endpoint.objects.get(name="a").state == "paused"


def test_scaled_to_zero_still_counts(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=2)
    create(alice_api, "a")
    alice_api.post("/v2/endpoint/alice/a/scale-to-zero")
    assert quota_usage(account=alice.personal_account)["cpu"] == 2
    expect(create(alice_api, "b"), 403)


def test_paused_endpoint_may_grow_and_is_checked_on_resume(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=4)
    create(alice_api, "a")
    alice_api.post("/v2/endpoint/alice/a/pause")
    expect(alice_api.put("/v2/endpoint/alice/a", {"compute": {"scaling": {"maxReplica": 3}}},
                         format="json"), 200)
    expect(alice_api.post("/v2/endpoint/alice/a/resume"), 403)


def test_deleting_endpoint_counts_until_gone(alice, alice_api):
    from django.utils import timezone

    quota_set(account=alice.personal_account, accelerator="cpu", limit=2)
    create(alice_api, "a")
    Endpoint.objects.update(first_applied_at=timezone.now())
    alice_api.delete("/v2/endpoint/alice/a")
    assert Endpoint.objects.get().state == "deleting"
    expect(create(alice_api, "b"), 403)


# ---------------------------------------------------------------- provider and quota APIs
def test_provider_api_shape_and_units(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=10)
    create(alice_api, "a", compute={"scaling": {"maxReplica": 3}})  # 6 vCPUs
    body = alice_api.get("/v2/provider/alice").json()
    vendors = {v["name"]: v for v in body["vendors"]}
    assert set(vendors) == {"aws", "azure", "gcp"}
    region = next(r for r in vendors["aws"]["regions"] if r["name"] == "us-east-1")
    assert region["label"] == "N. Virginia" and region["status"] == "available"
    computes = {c["id"]: c for c in region["computes"]}
    x4 = computes["aws-us-east-1-intel-spr-x4"]
    assert x4 == {"id": "aws-us-east-1-intel-spr-x4", "accelerator": "cpu", "numAccelerators": 4, "numCpus": 4,
                  "memoryGb": 8.0, "gpuMemoryGb": None, "instanceType": "intel-spr", "instanceSize": "x4",
                  "architecture": "Intel Sapphire Rapids", "status": "available", "pricePerHour": 0.134,
                  "quota": {"maxAccelerators": 10, "usedAccelerators": 6}}
    l4 = computes["aws-us-east-1-nvidia-l4-x4"]
    assert (l4["numAccelerators"], l4["gpuMemoryGb"], l4["quota"]) == (4, 96, {"maxAccelerators": 4,
                                                                              "usedAccelerators": 0})


def test_quota_api_lists_limits_usage_and_breakdown(alice, alice_api):
    create(alice_api, "a", compute={"scaling": {"maxReplica": 2}})
    create(alice_api, "b")
    alice_api.post("/v2/endpoint/alice/b/pause")
    body = alice_api.get("/v2/quotas/alice").json()
    cpu = next(q for q in body["quotas"] if q["accelerator"] == "cpu")
    assert cpu == {"accelerator": "cpu", "unit": "vCPUs", "limit": 32, "used": 4, "available": 28}
    assert [(e["name"], e["units"], e["state"]) for e in body["endpoints"]] == [("a", 4, "pending"), ("b", 0, "paused")]


def test_quota_requests_flow(db):
    admin, member = make_user("boss"), make_user("dev")
    org = make_org("acme", members={admin: "admin", member: "write"})
    admin_api, member_api = user_api(admin), user_api(member)
    body = {"accelerator": "gpu", "limit": 16, "reason": "launch week"}
    expect(member_api.post("/v2/quotas/acme/requests", body, format="json"), 403)
    r = admin_api.post("/v2/quotas/acme/requests", body, format="json")
    assert r.status_code == 201 and r.json()["status"] == "pending" and r.json()["requestedBy"] == "boss", r.content
    expect(admin_api.post("/v2/quotas/acme/requests", body, format="json"), 409)  # one pending
    low = admin_api.post("/v2/quotas/acme/requests", {**body, "accelerator": "cpu", "limit": 2}, format="json")
    assert low.status_code == 400 and "limit" in low.json()["fields"], low.content
    bad = admin_api.post("/v2/quotas/acme/requests", {"accelerator": "tpu", "limit": "x"}, format="json")
    assert bad.status_code == 400 and {"accelerator", "limit", "reason"} <= set(bad.json()["fields"]), bad.content
    assert [i["limit"] for i in member_api.get("/v2/quotas/acme/requests").json()["items"]] == [16]

    operator = make_user("op", is_staff=True)
    decided = quota_request_decide(request_id=r.json()["id"], approve=True, actor=operator)
    assert decided.decided_by == operator and decided.decided_at is not None
    gpu = next(q for q in member_api.get("/v2/quotas/acme").json()["quotas"] if q["accelerator"] == "gpu")
    assert gpu["limit"] == 16
    assert AuditEvent.objects.filter(account=org, action="quota.set", diff={"limit": [4, 16]}).exists()
    from controlplane.errors import Conflict

    with pytest.raises(Conflict):
        quota_request_decide(request_id=r.json()["id"], approve=False, actor=operator)


def test_admin_actions_approve_and_reject(db, client):
    operator = make_user("root", is_staff=True, password="pw")
    client.force_login(operator)
    account = make_user("cust").personal_account
    approve_me = QuotaRequest.objects.create(account=account, accelerator="gpu", requested_limit=10, reason="r")
    reject_me = QuotaRequest.objects.create(account=account, accelerator="cpu", requested_limit=99, reason="r")
    url = "/admin/quotas/quotarequest/"
    expect(client.post(url, {"action": "approve", "_selected_action": [approve_me.pk]}), 302)
    expect(client.post(url, {"action": "reject", "_selected_action": [reject_me.pk]}), 302)
    approve_me.refresh_from_db(), reject_me.refresh_from_db()
    assert (approve_me.status, approve_me.decided_by, reject_me.status) == ("approved", operator, "rejected")
    assert account.quotas.get(accelerator="gpu").limit == 10 and account.quotas.get(accelerator="cpu").limit == 32
    page = client.get("/admin/quotas/quota/")
    assert page.status_code == 200 and b"In use" in page.content, page.content


def test_set_quota_command(db, capsys):
    make_user("carol")
    call_command("set_quota", "carol", "--accelerator", "gpu", "--limit", "12")
    assert capsys.readouterr().out.strip() == "12"
    assert AuditEvent.objects.filter(action="quota.set", target="gpu").exists()


# ---------------------------------------------------------------- races on real connections
def _race(n: int, request) -> list:
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait(timeout=30)
            return request(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_creates_admit_exactly_what_fits():
    user = make_user("racer")
    secret = make_token(user)
    quota_set(account=user.personal_account, accelerator="cpu", limit=20)  # 10 x (1 replica x 2 vCPUs)
    statuses = _race(50, lambda i: create(api_client(secret), f"ep-{i}", ns="racer").status_code)
    assert statuses.count(202) == 10 and statuses.count(403) == 40, statuses
    assert Endpoint.objects.count() == 10
    assert quota_usage(account=user.personal_account)["cpu"] == 20


@pytest.mark.django_db(transaction=True)
def test_concurrent_max_replica_raises_admit_exactly_what_fits():
    user = make_user("grower")
    secret = make_token(user)
    api = api_client(secret)
    quota_set(account=user.personal_account, accelerator="cpu", limit=30)
    for i in range(10):
        expect(create(api, f"ep-{i}", ns="grower"), 202)  # 20 vCPUs held
    statuses = _race(10, lambda i: api_client(secret).put(
        f"/v2/endpoint/grower/ep-{i}", {"compute": {"scaling": {"maxReplica": 2}}}, format="json").status_code)
    assert statuses.count(200) == 5 and statuses.count(403) == 5, statuses
    assert quota_usage(account=user.personal_account)["cpu"] == 30


@pytest.mark.django_db(transaction=True)
def test_concurrent_resumes_admit_exactly_what_fits():
    user = make_user("resumer")
    secret = make_token(user)
    api = api_client(secret)
    quota_set(account=user.personal_account, accelerator="cpu", limit=20)
    for i in range(20):
        expect(create(api, f"ep-{i}", ns="resumer"), 202)
        expect(api.post(f"/v2/endpoint/resumer/ep-{i}/pause"), 200)
    statuses = _race(20, lambda i: api_client(secret).post(f"/v2/endpoint/resumer/ep-{i}/resume").status_code)
    assert statuses.count(200) == 10 and statuses.count(403) == 10, statuses
    assert quota_usage(account=user.personal_account)["cpu"] == 20
