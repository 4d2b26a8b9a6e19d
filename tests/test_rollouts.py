"""Canary rollouts through the API, with the reconciler against the fake Kubernetes API server and the
gateway's own traffic counter (``gateway.traffic.Traffic``) writing what callers saw to Redis: a good canary
is promoted through every step, one answering 5 % 500s is rolled back by its error-rate gate (the event and
``status.rollout`` name the gate and the figures), abort and promote by hand, the route the gateway splits
by, and what an update carrying a canary refuses."""

import asyncio

import pytest
import redis.asyncio
from django.conf import settings

from controlplane.records import route_record
from controlplane.traffic import status_class
from deployments.feed import route_row
from endpoints.models import Endpoint, EndpointEvent, Rollout
from gateway.traffic import Traffic
from tests.factories import endpoint_spec
from tests.fakekube.pods import pod_is_ready
from tests.helpers import expect
from tests.kube_helpers import NS, converge

URL = "/v2/endpoint/alice/web"
FAST = {"strategy": "canary", "steps": [{"weight": 20, "pauseSeconds": 0}, {"weight": 60, "pauseSeconds": 0}],
        "gates": {"minRequests": 20}}


def answered(gateway_prefix: str, endpoint_id: int, *, whole: int, canary: int, canary_errors: int = 0,
             version: str = "r2") -> None:
    """What the gateway counts for ``whole`` answers of which ``canary`` came from the canary (of them
    ``canary_errors`` 500s): every answer under "", the canary's again under its version."""
    async def serve() -> None:
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        traffic = Traffic(client, gateway_prefix, interval=5)
        for i in range(whole):
            sent_to_canary = i < canary
            status = 500 if sent_to_canary and i < canary_errors else 200
            for slots in [traffic.counters(endpoint_id)] + ([traffic.counters(endpoint_id, version)]
                                                           if sent_to_canary else []):
                traffic.begin(slots)
                traffic.end(slots, status_class(status), 0.02)
        assert await traffic.flush()
        await client.aclose()

    asyncio.run(serve())


def refused(response, code: str) -> None:
    assert expect(response, 409).json()["code"] == code, response.json()


def live(fake_kube, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in fake_kube.objects(kind, NS)}


def rollout(api) -> dict | None:
    return expect(api.get(URL), 200).json()["status"]["rollout"]


def reconcile_until(endpoint_id: int, api, predicate, what: str, tries: int = 60):
    import time

    from deployments.reconcile import Retry, endpoint_reconcile

    for _ in range(tries):
        try:
            endpoint_reconcile(endpoint_id=endpoint_id)
        except Retry:
            pass
        body = expect(api.get(URL), 200).json()
        if predicate(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"never {what}: {body['status']}")


def running(alice_api) -> Endpoint:
    expect(alice_api.post("/v2/endpoint/alice", endpoint_spec("web", type="protected"), format="json"), 202)
    return converge(Endpoint.objects.get(name="web").pk, "running")


def phase_is(phase: str, weight: int | None = None):
    return lambda body: (body["status"]["rollout"] or {}).get("phase") == phase and (
        weight is None or body["status"]["rollout"]["weights"]["canary"] == weight)


def test_a_good_canary_goes_through_every_step_and_is_promoted(alice_api, cluster, fake_kube, fake_hub,
                                                               gateway_prefix):
    endpoint = running(alice_api)
    body = expect(alice_api.put(URL, {"model": {"env": {"MODE": "new"}}, "rollout": FAST}, format="json"), 200).json()
    assert body["status"]["state"] == "updating" and body["status"]["rollout"]["phase"] == "starting", body["status"]
    assert body["status"]["rollout"]["weights"] == {"stable": 100, "canary": 0}

    body = reconcile_until(endpoint.pk, alice_api, phase_is("progressing", 20), "at step 1")
    assert body["status"]["state"] == "updating" and body["status"]["rollout"]["step"] == 1, body["status"]
    assert {"ep-web", "canary-ep-web"} <= live(fake_kube, "deployments")
    assert {"ep-web", "canary-ep-web"} <= live(fake_kube, "horizontalpodautoscalers")  # both autoscale
    stable_env = {e["name"]: e["value"] for e in fake_kube.get_object("deployments", NS, "ep-web")["spec"]["template"]
                  ["spec"]["containers"][0]["env"]}
    canary = fake_kube.get_object("deployments", NS, "canary-ep-web")
    canary_env = {e["name"]: e["value"] for e in canary["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "MODE" not in stable_env and canary_env["MODE"] == "new"
    assert canary["spec"]["selector"]["matchLabels"] == {"endpoints.controlplane.dev/id": f"{endpoint.pk}-canary"}
    route = route_row(account_slug="alice", name="web")
    assert route["canary"] == {"generation": 2, "weight": 20, "sticky": False}, route
    published = route_record(route)["canary"]  # what the gateway splits by
    assert (published["weight"], published["version"]) == (20, "r2") and "canary-ep-web" in published["upstream"]

    # Too few canary answers: the step waits and says how many more it needs.
    answered(gateway_prefix, endpoint.pk, whole=50, canary=10)
    body = reconcile_until(endpoint.pk, alice_api, lambda b: b["status"]["rollout"]["readings"], "read")
    assert body["status"]["rollout"]["readings"]["verdict"] == "waiting", body["status"]["rollout"]
    assert "10 more canary answers" in body["status"]["message"], body["status"]["message"]

    answered(gateway_prefix, endpoint.pk, whole=50, canary=15)
    body = reconcile_until(endpoint.pk, alice_api, phase_is("progressing", 60), "at step 2")
    readings = body["status"]["rollout"]["readings"]
    assert readings["verdict"] == "pass" and readings["canary"]["requests"] == 25, readings
    assert readings["stable"]["requests"] == 75 and readings["canary"]["errorRate"] == 0, readings

    answered(gateway_prefix, endpoint.pk, whole=40, canary=25)
    body = reconcile_until(endpoint.pk, alice_api, lambda b: b["status"]["state"] == "running", "promoted")
    assert body["status"]["rollout"]["phase"] == "promoted" and body["status"]["rollout"]["weights"]["canary"] == 0
    assert body["status"]["servingRevision"] == 2
    reconcile_until(endpoint.pk, alice_api, lambda b: "canary-ep-web" not in live(fake_kube, "deployments"),
                    "pruned the canary")
    env = {e["name"]: e["value"] for e in fake_kube.get_object("deployments", NS, "ep-web")["spec"]["template"]
           ["spec"]["containers"][0]["env"]}
    assert env["MODE"] == "new" and live(fake_kube, "services") >= {"ep-web"} and "canary-ep-web" not in live(
        fake_kube, "services")
    assert route_row(account_slug="alice", name="web")["canary"] is None
    assert Endpoint.objects.get(pk=endpoint.pk).held_replica == 1  # the quota of one version again
    steps = list(EndpointEvent.objects.filter(endpoint=endpoint, kind="rollout").values_list("message", flat=True))
    assert [m.split(":")[0] for m in steps] == ["Canary step 1 of 2", "Canary step 2 of 2", "Canary passed all 2 steps",
                                                "Canary promoted"], steps
    assert not Rollout.objects.get(pk=endpoint.pk).stable_secrets_encrypted


def test_a_canary_answering_five_percent_500s_is_rolled_back_by_its_error_rate_gate(alice_api, cluster, fake_kube,
                                                                                    fake_hub, gateway_prefix):
    endpoint = running(alice_api)
    expect(alice_api.put(URL, {"model": {"env": {"MODE": "bad"}}, "rollout": FAST}, format="json"), 200)
    reconcile_until(endpoint.pk, alice_api, phase_is("progressing", 20), "at step 1")
    answered(gateway_prefix, endpoint.pk, whole=200, canary=40, canary_errors=2)  # 5 %
    body = reconcile_until(endpoint.pk, alice_api, lambda b: b["status"]["state"] == "updateFailed", "rolled back")
    status = body["status"]
    assert status["rollout"]["phase"] == "rolledBack" and status["rollout"]["weights"]["canary"] == 0, status
    assert status["rollout"]["readings"]["failed"] == ["maxErrorRate"], status["rollout"]
    assert "gate maxErrorRate failed" in status["message"] and "5.0% 5xx (2 of 40)" in status["message"], status
    assert status["servingRevision"] == 1 and status["desiredRevision"] == 2
    event = EndpointEvent.objects.filter(endpoint=endpoint, kind="rollout").last()
    assert "gate maxErrorRate failed" in event.message and "the stable 0.0% of 160" in event.message, event.message
    reconcile_until(endpoint.pk, alice_api, lambda b: "canary-ep-web" not in live(fake_kube, "deployments"),
                    "pruned the canary")
    env = {e["name"]: e["value"] for e in fake_kube.get_object("deployments", NS, "ep-web")["spec"]["template"]
           ["spec"]["containers"][0]["env"]}
    assert "MODE" not in env  # the stable kept its spec
    revisions = {r["revision"]: r["outcome"] for r in expect(alice_api.get(f"{URL}/revisions"), 200).json()["items"]}
    assert revisions == {2: "rolledBack", 1: "serving"}, revisions

    # A rollback by hand returns the row's spec to the stable's: no pod changes, running again.
    expect(alice_api.post(f"{URL}/rollback"), 200)
    body = reconcile_until(endpoint.pk, alice_api, lambda b: b["status"]["state"] == "running", "running")
    assert body["status"]["rollout"] is None and "MODE" not in body["model"]["env"]


def test_a_canary_takes_no_traffic_until_its_service_has_a_ready_endpoint(alice_api, cluster, fake_kube, fake_hub):
    endpoint = running(alice_api)
    fake_kube.hold_endpointslices()  # the EndpointSlice controller lags the canary's pods
    expect(alice_api.put(URL, {"model": {"env": {"MODE": "new"}}, "rollout": FAST}, format="json"), 200)
    body = reconcile_until(endpoint.pk, alice_api, lambda b: "no ready endpoint" in b["status"]["message"],
                           "waiting for the canary's Service")
    canary_pods = [p for p in fake_kube.objects("pods", NS)
                   if p["metadata"]["labels"].get("endpoints.controlplane.dev/id") == f"{endpoint.pk}-canary"]
    assert canary_pods and all(pod_is_ready(p) for p in canary_pods), "the pods are ready: only the Service is not"
    assert body["status"]["rollout"]["phase"] == "starting" and body["status"]["rollout"]["weights"]["canary"] == 0
    assert (route_row(account_slug="alice", name="web")["canary"] or {}).get("weight", 0) == 0

    fake_kube.hold_endpointslices(False)
    reconcile_until(endpoint.pk, alice_api, phase_is("progressing", 20), "at step 1 once the Service routes")


def test_abort_and_promote_by_hand(alice_api, cluster, fake_kube, fake_hub, gateway_prefix):
    endpoint = running(alice_api)
    refused(alice_api.post(f"{URL}/rollout/abort"), "no_rollout")
    slow = {**FAST, "steps": [{"weight": 10, "pauseSeconds": 3600}]}
    expect(alice_api.put(URL, {"model": {"env": {"MODE": "x"}}, "rollout": slow}, format="json"), 200)
    reconcile_until(endpoint.pk, alice_api, phase_is("progressing", 10), "at step 1")
    refused(alice_api.put(URL, {"model": {"env": {"MODE": "y"}}}, format="json"), "rollout_in_progress")
    refused(alice_api.post(f"{URL}/pause"), "rollout_in_progress")
    body = expect(alice_api.post(f"{URL}/rollout/abort", {"reason": "wrong build"}, format="json"), 200).json()
    assert body["status"]["rollout"]["phase"] == "rolledBack"
    body = reconcile_until(endpoint.pk, alice_api, lambda b: b["status"]["state"] == "updateFailed", "rolled back")
    assert body["status"]["message"] == "Canary rolled back: aborted by alice (wrong build)", body["status"]

    expect(alice_api.post(f"{URL}/rollback"), 200)
    converge(endpoint.pk, "running")
    expect(alice_api.put(URL, {"model": {"env": {"MODE": "z"}}, "rollout": slow}, format="json"), 200)
    reconcile_until(endpoint.pk, alice_api, phase_is("progressing", 10), "at step 1")
    expect(alice_api.post(f"{URL}/rollout/promote"), 200)
    body = reconcile_until(endpoint.pk, alice_api, lambda b: b["status"]["state"] == "running", "promoted")
    assert body["status"]["rollout"]["phase"] == "promoted" and body["model"]["env"] == {"MODE": "z"}


@pytest.mark.parametrize(("rollout", "field"), [
    ({"strategy": "blue-green"}, "rollout.strategy"),
    ({"strategy": "canary", "steps": []}, "rollout.steps"),
    ({"strategy": "canary", "steps": [{"weight": 0}]}, "rollout.steps"),
    ({"strategy": "canary", "steps": [{"weight": 50}, {"weight": 20}]}, "rollout.steps"),
    ({"strategy": "canary", "gates": {"maxErrorRate": 2}}, "rollout.gates"),
    ({"strategy": "canary", "sticky": "yes"}, "rollout.sticky"),
    ("canary", "rollout"),
])
def test_a_bad_rollout_is_a_400_naming_the_field_and_changes_nothing(alice_api, cluster, fake_kube, fake_hub,
                                                                     rollout, field):
    endpoint = running(alice_api)
    response = expect(alice_api.put(URL, {"model": {"env": {"MODE": "x"}}, "rollout": rollout}, format="json"), 400)
    assert any(key.startswith(field) for key in response.json()["fields"]), response.json()
    assert Endpoint.objects.get(pk=endpoint.pk).generation == endpoint.generation
    assert not Rollout.objects.filter(pk=endpoint.pk).exists()


def test_a_canary_refuses_private_endpoints_compute_changes_and_an_endpoint_not_serving(alice_api, cluster,
                                                                                        fake_kube, fake_hub):
    endpoint = running(alice_api)
    canary = {"strategy": "canary"}
    response = expect(alice_api.put(URL, {"compute": {"instanceSize": "x4"}, "rollout": canary}, format="json"), 400)
    assert "rollout.strategy" in response.json()["fields"]
    response = expect(alice_api.put(URL, {"type": "private", "rollout": canary}, format="json"), 400)
    assert "rollout.strategy" in response.json()["fields"]
    expect(alice_api.put(URL, {"model": {"env": {"A": "1"}}}, format="json"), 200)  # rolling: updating now
    expect(alice_api.put(URL, {"model": {"env": {"A": "2"}}, "rollout": canary}, format="json"), 409)
    assert not Rollout.objects.filter(pk=endpoint.pk).exists()


def test_the_gateways_own_route_query_knows_the_phases_that_take_traffic():
    """gateway.db reads routes without Django: its SQL names the active phases itself."""
    from endpoints.models import ACTIVE_PHASES, RolloutPhase
    from gateway.db import ROUTE_SQL

    named = {phase for phase in RolloutPhase.values if f"'{phase}'" in ROUTE_SQL}
    assert named == set(ACTIVE_PHASES), named


def test_a_spent_budget_that_pauses_rolls_a_canary_back_first(alice, alice_api, cluster, fake_kube, fake_hub):
    from decimal import Decimal

    from django.utils import timezone

    from endpoints.budgets import budgets_enforce
    from endpoints.costs import month_start
    from endpoints.models import CostHour
    from quotas.models import Budget
    from quotas.services import budget_set

    endpoint = running(alice_api)
    slow = {**FAST, "steps": [{"weight": 10, "pauseSeconds": 3600}]}
    expect(alice_api.put(URL, {"model": {"env": {"MODE": "x"}}, "rollout": slow}, format="json"), 200)
    reconcile_until(endpoint.pk, alice_api, phase_is("progressing", 10), "at step 1")

    now = timezone.now()
    budget_set(account=alice.personal_account, monthly_limit=Decimal("10"), action=Budget.Action.PAUSE)
    CostHour.objects.create(account=alice.personal_account, endpoint_name="web", hour=month_start(now),
                            replica_seconds=3600, cost=Decimal("11"))
    assert budgets_enforce(now=now).paused == ["alice/web"]
    body = expect(alice_api.get(URL), 200).json()
    assert body["status"]["state"] == "paused", body["status"]
    assert body["status"]["rollout"]["phase"] == "rolledBack", body["status"]["rollout"]
    assert "the monthly budget is spent" in body["status"]["rollout"]["message"]
