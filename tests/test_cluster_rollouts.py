"""Canary rollouts end to end on a real Kubernetes control plane (``tests/clustertier.py``): Celery worker and
beat reconcile, the real gateway (``python -m gateway``) splits callers' traffic and counts what they saw,
and callers keep sending requests through every step.

Both versions' Services are stood in for by one stub (``Versions``): the cluster's service URL template
sends ``<stub>/<Service name>/<path>``, so the stub knows which Service a request reached, and it answers
for a Service only while the cluster's EndpointSlices give that Service a ready endpoint (as a Service with
nowhere to route would not). Every answer the callers got is counted: a request is dropped if it raised, or got
any 5xx the canary itself did not send.
"""

import asyncio
import threading
import time

import pytest
import requests
from aiohttp import web
from django.contrib.auth import get_user_model
from django.utils import timezone
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from deployments.models import Cluster
from deployments.services import cluster_update
from endpoints.models import EndpointEvent
from tests.clustertier import pod_shas, wait_for
from tests.factories import endpoint_spec, make_token
from tests.gatewayrig import StubUpstream
from tests.helpers import expect
from tests.hfclient import origin, redirected

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
MAIN, V1 = "1" * 40, "2" * 40  # the fake Hub's gpt2@main and gpt2@v1
STABLE, CANARY = "ep-web", "canary-ep-web"
STEPS = [{"weight": 25, "pauseSeconds": 3}, {"weight": 50, "pauseSeconds": 3}]


class Versions(StubUpstream):
    """Both versions' Services: ``/<service>/...`` answers ``{"service": <service>}`` while that Service has
    a ready endpoint in its EndpointSlices (what a Service routes to), else 503; with ``bad_canary`` set,
    every 20th request to the canary (the 10th, 30th, ...) is a 500. The slices are read every 0.1 s, and
    again at once before a 503, so the answer is the cluster's at the moment of the request."""

    def __init__(self, probe, ns: str):
        self.probe, self.ns = probe, ns
        self.serving: set[str] = set()
        self.bad_canary = False
        self.canary_seen = 0
        self.watching = threading.Event()
        super().__init__()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def _read(self) -> set[str]:
        slices = self.probe.items(f"/apis/discovery.k8s.io/v1/namespaces/{self.ns}/endpointslices")
        return {s["metadata"]["labels"]["kubernetes.io/service-name"] for s in slices
                if any((e.get("conditions") or {}).get("ready") is not False for e in s.get("endpoints") or [])}

    def _poll(self) -> None:
        while not self.watching.is_set():
            self.serving = self._read()
            time.sleep(0.1)

    def stop(self) -> None:
        self.watching.set()
        super().stop()

    async def _echo(self, request: web.Request) -> web.Response:
        service = request.path.split("/")[1]
        if service not in self.serving and service not in await asyncio.to_thread(self._read):
            return web.Response(status=503, text=f"no ready endpoint behind {service}")
        if service == CANARY:
            self.canary_seen += 1
            if self.bad_canary and self.canary_seen % 20 == 10:
                return web.json_response({"service": service, "error": "boom"}, status=500)
        return web.json_response({"service": service})


class Callers:
    """``threads`` callers sending requests through the gateway one after another (keep-alive), until
    ``stop()``. ``answers``: (monotonic time, status or None, the Service that answered or what went wrong)."""

    def __init__(self, url: str, token: str, threads: int = 2):
        self.url, self.token = url, token
        self.answers: list[tuple[float, int | None, str]] = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._call, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _call(self) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {self.token}"
            while not self.done.is_set():
                at = time.monotonic()
                try:
                    r = session.post(self.url, json={"inputs": "hello"}, timeout=30)
                    try:
                        side = r.json().get("service") or r.text[:120]
                    except ValueError:
                        side = r.text[:120]
                    self.answers.append((at, r.status_code, side))
                except requests.RequestException as exc:
                    self.answers.append((at, None, type(exc).__name__))
                time.sleep(0.02)

    def stop(self) -> list[tuple[float, int | None, str]]:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=35)
        return self.answers

    def count(self, service: str) -> int:
        return sum(1 for _, _, side in list(self.answers) if side == service)


def dropped(answers) -> list[tuple[float, int | None, str]]:
    """Answers that are not the stub's own: an exception, or a 5xx other than the canary's 500."""
    return [a for a in answers if a[1] is None or a[1] >= 500 and not (a[1] == 500 and a[2] == CANARY)]


@pytest.fixture
def rig(api, kube_cluster, celery, gateway, tmp_path, gateway_prefix):
    """The worker and beat, the gateway, and the stub behind the cluster's Services; the endpoint's URL is
    the gateway's path-style address, so a client following ``status.url`` reaches it."""
    stub = Versions(kube_cluster, api.ns)
    gw = gateway(GATEWAY_ACTIVITY_SECONDS="1")
    cluster_update(cluster=Cluster.objects.get(name="local"), changes={
        "service_url_template": f"{stub.url}/{{service}}",
        "endpoint_url_template": f"{gw.url}/{{account}}/{{name}}"})
    celery("worker", GATEWAY_REDIS_PREFIX=gateway_prefix)
    celery("beat", GATEWAY_REDIS_PREFIX=gateway_prefix)
    user = get_user_model().objects.get(username=api.account)
    yield {"stub": stub, "gateway": gw, "token": make_token(user), "url": f"/v2/endpoint/{api.account}/web"}
    stub.stop()


def body(api, url: str) -> dict:
    return expect(api.get(url), 200).json()


def settled(api, kube_cluster, url: str, sha: str, generation: int, timeout: float = 120) -> dict:
    """Wait until the endpoint runs ``generation``, every live pod runs ``sha`` and no canary is left."""
    def done():
        got = body(api, url)
        return got if (got["status"]["state"] == "running" and got["status"]["servingRevision"] == generation
                       and pod_shas(kube_cluster, api.ns) == [(sha, True)]
                       and kube_cluster.get(f"/apis/apps/v1/namespaces/{api.ns}/deployments/{CANARY}") is None) \
            else None
    return wait_for(done, timeout, lambda: f"generation {generation} on {sha[:7]}: {body(api, url)['status']} "
                    f"pods {pod_shas(kube_cluster, api.ns)}")


def timeline(endpoint_name: str, since) -> list[str]:
    """The endpoint's events after ``since``, as ``+seconds kind: message`` lines."""
    events = EndpointEvent.objects.filter(endpoint__name=endpoint_name, created_at__gte=since).order_by("pk")
    return [f"+{(e.created_at - since).total_seconds():6.2f} s {e.kind}: {e.message}" for e in events]


def test_a_good_canary_is_promoted_through_every_step_then_rolled_back_by_hand_without_a_dropped_request(
        api, kube_cluster, rig):
    url = rig["url"]
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web", type="protected"), format="json"), 202)
    first = settled(api, kube_cluster, url, MAIN, 1)
    assert first["status"]["url"] == f"{rig['gateway'].url}/{api.account}/web", first["status"]
    callers = Callers(f"{first['status']['url']}/generate", rig["token"])
    wait_for(lambda: callers.count(STABLE) >= 20, 30, "callers answered by the stable")

    started = timezone.now()
    rollout = {"strategy": "canary", "steps": STEPS, "gates": {"minRequests": 20, "maxP95LatencyMs": 5000}}
    expect(api.put(url, {"model": {"revision": "v1"}, "rollout": rollout}, format="json"), 200)
    weights_seen = set()

    def promoted():
        got = body(api, url)["status"]
        weights_seen.add((got["rollout"] or {}).get("weights", {}).get("canary"))
        return got["state"] == "running" and (got["rollout"] or {}).get("phase") == "promoted"
    wait_for(promoted, 120, lambda: f"promotion: {body(api, url)['status']}", interval=0.1)
    canary_answers = callers.count(CANARY)
    promoted_body = settled(api, kube_cluster, url, V1, 2)
    assert promoted_body["model"]["revision"] == V1
    assert {25, 50} <= weights_seen, weights_seen
    assert canary_answers >= 40, canary_answers  # both steps' gates needed 20 canary answers each
    steps = [e.split(": ", 1)[1].split(":")[0] for e in timeline("web", started) if " rollout: " in e]
    assert steps == ["Canary step 1 of 2", "Canary step 2 of 2", "Canary passed all 2 steps", "Canary promoted"], \
        timeline("web", started)

    # Once the canary is gone every caller is on the promoted stable; then a rollback by hand, under load.
    mark = len(callers.answers)
    wait_for(lambda: callers.count(STABLE) > mark + 20, 30, "callers answered after the promotion")
    assert all(side == STABLE for _, _, side in callers.answers[mark:]), callers.answers[mark:][:5]
    rolled = expect(api.post(f"{url}/rollback"), 200).json()
    assert rolled["model"]["revision"] == MAIN and rolled["status"]["desiredRevision"] == 3, rolled["status"]
    settled(api, kube_cluster, url, MAIN, 3)
    time.sleep(1)
    answers = callers.stop()

    assert dropped(answers) == [], dropped(answers)[:10]
    assert {side for _, _, side in answers} == {STABLE, CANARY}
    print(f"{len(answers)} answers: {callers.count(STABLE)} stable, {callers.count(CANARY)} canary")
    print("\n".join(timeline("web", started)))


def test_a_canary_answering_five_percent_500s_is_rolled_back_by_its_gate_and_no_request_is_dropped(
        api, kube_cluster, rig):
    url, stub = rig["url"], rig["stub"]
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web", type="protected"), format="json"), 202)
    first = settled(api, kube_cluster, url, MAIN, 1)
    callers = Callers(f"{first['status']['url']}/generate", rig["token"])
    wait_for(lambda: callers.count(STABLE) >= 20, 30, "callers answered by the stable")

    stub.bad_canary = True
    started = timezone.now()
    rollout = {"strategy": "canary", "steps": STEPS, "gates": {"minRequests": 20, "maxP95LatencyMs": 5000}}
    expect(api.put(url, {"model": {"revision": "v1"}, "rollout": rollout}, format="json"), 200)
    wait_for(lambda: body(api, url)["status"]["state"] == "updateFailed", 120,
             lambda: f"the rollback: {body(api, url)['status']}", interval=0.1)
    status = body(api, url)["status"]
    assert status["rollout"]["phase"] == "rolledBack" and status["rollout"]["weights"]["canary"] == 0, status
    readings = status["rollout"]["readings"]
    assert readings["failed"] == ["maxErrorRate"] and readings["stable"]["errorRate"] == 0, readings
    assert readings["canary"]["errors"] >= 1 and readings["canary"]["requests"] >= 20, readings
    assert "gate maxErrorRate failed" in status["message"], status["message"]
    event = EndpointEvent.objects.filter(endpoint__name="web", kind="rollout").last()
    assert "gate maxErrorRate failed" in event.message and "5xx" in event.message, event.message
    assert (status["servingRevision"], status["desiredRevision"]) == (1, 2), status

    # The canary's objects go; the stable never changed; callers end on it alone.
    wait_for(lambda: kube_cluster.get(f"/apis/apps/v1/namespaces/{api.ns}/deployments/{CANARY}") is None, 60,
             "the canary Deployment pruned")
    assert pod_shas(kube_cluster, api.ns) == [(MAIN, True)]
    mark = len(callers.answers)
    wait_for(lambda: callers.count(STABLE) > mark + 20, 30, "callers answered after the rollback")
    answers = callers.stop()
    assert all(side == STABLE for _, _, side in answers[mark:]), answers[mark:][:5]
    assert dropped(answers) == [], dropped(answers)[:10]
    canary_500s = [a for a in answers if a[1] == 500]
    assert canary_500s and all(side == CANARY for _, _, side in canary_500s)
    assert callers.count(CANARY) >= 20
    revisions = {r["revision"]: r["outcome"] for r in body(api, f"{url}/revisions")["items"]}
    assert revisions == {2: "rolledBack", 1: "serving"}, revisions
    print(f"{len(answers)} answers: {callers.count(STABLE)} stable, {callers.count(CANARY)} canary "
          f"({len(canary_500s)} of them 500s)")
    print("\n".join(timeline("web", started)))


def test_the_huggingface_hub_client_sees_updating_during_a_rollout_and_waits_it_out(
        api, kube_cluster, rig, live_server, monkeypatch, tmp_path):
    """The unmodified client through a whole canary: create and wait() on the real cluster (its health probe
    goes through the gateway), a rollout started by our API, what the client sees while it runs, and wait()
    returning once it is promoted."""
    url = rig["url"]
    also = (origin(rig["gateway"].url),)  # wait() probes the endpoint's URL: the gateway
    with redirected(monkeypatch, tmp_path, live_server.url, rig["token"], also=also) as guard:
        hf = HfApi(token=rig["token"])
        ep = hf.create_inference_endpoint("web", repository="gpt2", framework="pytorch", accelerator="cpu",
                                          vendor="aws", region="us-east-1", instance_size="x2",
                                          instance_type="intel-spr", type="authenticated")
        assert ep.status == "pending"
        ep.wait(timeout=120, refresh_every=1)
        assert (ep.status, ep.revision) == ("running", MAIN)

        slow = {"strategy": "canary", "steps": [{"weight": 10, "pauseSeconds": 3600}]}
        expect(api.put(url, {"model": {"revision": "v1"}, "rollout": slow}, format="json"), 200)
        wait_for(lambda: (body(api, url)["status"]["rollout"] or {}).get("phase") == "progressing", 60,
                 lambda: f"the canary's first step: {body(api, url)['status']}")

        during = ep.fetch()
        assert during.status == "updating" and during.url is not None, during.raw["status"]
        assert during.raw["status"]["rollout"]["weights"] == {"stable": 90, "canary": 10}
        assert [e.name for e in hf.list_inference_endpoints()] == ["web"]
        with pytest.raises(HfHubHTTPError) as refused:
            hf.update_inference_endpoint("web", min_replica=1, max_replica=2)
        assert refused.value.response.status_code == 409, refused.value.response.text
        assert refused.value.response.json()["code"] == "rollout_in_progress"

        expect(api.post(f"{url}/rollout/promote"), 200)
        ep.wait(timeout=120, refresh_every=1)
        assert (ep.status, ep.revision) == ("running", V1)
        assert ep.raw["status"]["rollout"]["phase"] == "promoted"
        health = [s for s in guard["seen"] if s.startswith(f"GET {rig['gateway'].url}/")]
        assert health, guard["seen"][-5:]
