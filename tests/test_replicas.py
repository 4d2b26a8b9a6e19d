"""``GET /v2/endpoint/{ns}/{name}/replicas``: the endpoint's pods read live from its cluster (the fake API
server), their states and failures, and the names the logs API takes as ``replica``."""

from datetime import datetime

import pytest

from deployments.logs import replica_view
from tests.factories import make_token, make_user
from tests.helpers import api_client, expect, user_api
from tests.kube_helpers import NS, converge, create

CRASHING = {"image": {"custom": {"url": "ghcr.io/acme/server:crashloop", "healthRoute": "/health", "port": 8080}}}


def replicas(api, name: str) -> list[dict]:
    return expect(api.get(f"/v2/endpoint/alice/{name}/replicas"), 200, name).json()["items"]


def test_replicas_of_a_healthy_and_a_crash_looping_endpoint(alice, cluster, fake_kube, fake_hub):
    api = user_api(alice, role="read")  # reading suffices
    assert replicas(api, create(alice, "later").name) == []  # nothing applied yet: no replica
    converge(create(alice, "web", compute={"scaling": {"minReplica": 2, "maxReplica": 2}}).pk, "running")
    fake_kube.wait_until(lambda: [r["state"] for r in replicas(api, "web")] == ["running", "running"],
                         message="two running replicas")
    healthy = replicas(api, "web")
    assert [r["name"] for r in healthy] == sorted(p["metadata"]["name"] for p in fake_kube.objects("pods", NS)
                                                  if p["metadata"]["name"].startswith("ep-web-"))
    for replica in healthy:
        assert replica["name"].startswith("ep-web-") and replica["node"].startswith("fake-node-"), replica
        assert (replica["ready"], replica["restarts"], replica["reason"], replica["lastFailure"]) == (
            True, 0, None, None), replica
        datetime.fromisoformat(replica["startedAt"])

    converge(create(alice, "crash", model=CRASHING).pk, "failed")
    crashed = fake_kube.wait_until(lambda: [r for r in replicas(api, "crash") if r["restarts"] >= 2],
                                   message="a replica restarted twice")[0]
    assert (crashed["state"], crashed["reason"], crashed["ready"]) == ("failed", "CrashLoopBackOff", False), crashed
    failure = crashed["lastFailure"]
    assert (failure["container"], failure["reason"], failure["exitCode"]) == ("inference", "Error", 1), failure
    datetime.fromisoformat(failure["finishedAt"])

    # The logs API takes the name the replicas API returns.
    lines = expect(api.get(f"/v2/endpoint/alice/crash/logs?replica={crashed['name']}&tail=1"), 200)
    assert lines.content.decode().splitlines() == [f"==> {crashed['name']} <==",
                                                   "RuntimeError: CUDA error: out of memory"]

    expect(api_client(make_token(make_user("carol"))).get("/v2/endpoint/alice/web/replicas"), 404)
    expect(api_client().get("/v2/endpoint/alice/web/replicas"), 401)
    expect(api.get("/v2/endpoint/alice/nothing/replicas"), 404)
    fake_kube.unreachable(True)
    down = api.get("/v2/endpoint/alice/web/replicas")
    assert down.status_code == 503 and down.json()["code"] == "cluster_unavailable", down.content


def _pod(phase: str, *, conditions=(), containers=(), **meta) -> dict:
    return {"metadata": {"name": "ep-x-1", **meta}, "spec": {"nodeName": "n1"},
            "status": {"phase": phase, "conditions": list(conditions), "containerStatuses": list(containers),
                       "startTime": "2026-01-01T00:00:00Z"}}


@pytest.mark.parametrize(("pod", "state", "reason"), [
    (_pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]),
     "pending", "Unschedulable"),
    (_pod("Pending", containers=[{"name": "inference", "state": {"waiting": {"reason": "ContainerCreating"}}}]),
     "pending", "ContainerCreating"),
    (_pod("Pending", containers=[{"name": "inference", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]),
     "failed", "ImagePullBackOff"),
    (_pod("Running", containers=[{"name": "inference", "state": {"running": {}}}]), "initializing",
     "ContainersNotReady"),
    (_pod("Running", conditions=[{"type": "Ready", "status": "True"}]), "running", None),
    (_pod("Running", conditions=[{"type": "Ready", "status": "True"}], deletionTimestamp="2026-01-01T00:01:00Z"),
     "terminating", None),
    (_pod("Failed"), "failed", "Failed"),
    (_pod("Succeeded"), "succeeded", None),
    (_pod("Unknown"), "unknown", None),
])
def test_replica_states(pod, state, reason):
    view = replica_view(pod)
    assert (view["state"], view["reason"]) == (state, reason), view


def test_the_last_failure_is_the_latest_unclean_termination_of_any_container():
    pod = _pod("Running", containers=[
        {"name": "inference", "restartCount": 3,
         "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-01-01T00:05:00Z"}},
         "state": {"running": {}}},
        {"name": "sidecar", "restartCount": 1,
         "lastState": {"terminated": {"exitCode": 2, "reason": "Error", "message": "bad flag",
                                      "finishedAt": "2026-01-01T00:02:00Z"}},
         "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-01-01T00:09:00Z"}}},
    ])
    view = replica_view(pod)
    assert view["restarts"] == 4
    assert view["lastFailure"] == {"container": "inference", "reason": "OOMKilled", "message": None,
                                   "exitCode": 137, "finishedAt": "2026-01-01T00:05:00Z"}
