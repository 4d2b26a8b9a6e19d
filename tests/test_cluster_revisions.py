"""Spec revisions and rollback on a real Kubernetes control plane (``tests/clustertier.py``): a rollback by
hand returns the running pods to the model commit the earlier revision ran, although the branch it named
points elsewhere by then (the reconciler reuses the revision's pinned sha, it never asks the Hub again).
"""

import pytest

from endpoints.models import Endpoint
from tests.clustertier import pod_shas, wait_for
from tests.factories import endpoint_spec
from tests.helpers import expect

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
MAIN, V1, MOVED = "1" * 40, "2" * 40, "9" * 40  # the fake Hub's gpt2@main and gpt2@v1, and main once moved


def serving(api, kube_cluster, sha: str, generation: int, timeout: float = 90) -> None:
    """Wait until the endpoint runs ``generation`` and every live pod runs ``sha``."""
    def settled():
        row = Endpoint.objects.filter(name="web").values("state", "observed_generation", "serving_generation").first()
        return (row and row["state"] == "running" and row["observed_generation"] == generation
                and pod_shas(kube_cluster, api.ns) == [(sha, True)])
    wait_for(settled, timeout, lambda: f"generation {generation} on {sha[:7]}: "
             f"{Endpoint.objects.filter(name='web').values('state', 'message', 'generation').first()} "
             f"pods {pod_shas(kube_cluster, api.ns)}")


def test_rollback_by_hand_returns_the_pods_to_the_previous_pinned_commit(api, kube_cluster, celery, fake_hub):
    celery("worker")
    celery("beat")
    url = f"/v2/endpoint/{api.account}/web"
    expect(api.post(f"/v2/endpoint/{api.account}", endpoint_spec("web"), format="json"), 202)
    serving(api, kube_cluster, MAIN, 1)
    expect(api.put(url, {"model": {"revision": "v1"}}, format="json"), 200)
    serving(api, kube_cluster, V1, 2)

    fake_hub.repos["gpt2"]["main"] = MOVED  # revision 1 named 'main': a re-resolution would now say MOVED
    body = expect(api.post(f"{url}/rollback"), 200).json()
    assert body["status"]["desiredRevision"] == 3 and body["model"]["revision"] == MAIN, body
    serving(api, kube_cluster, MAIN, 3)

    items = expect(api.get(f"{url}/revisions"), 200).json()["items"]
    assert [(r["revision"], r["outcome"], r["pinnedRevision"]) for r in items] == [
        (3, "serving", MAIN), (2, "rolledBack", V1), (1, "superseded", MAIN)], items
    assert (items[0]["rollbackOf"], items[0]["rolledBackFrom"]) == (1, 2), items[0]
    assert ("gpt2", "main") not in fake_hub.calls[1:], fake_hub.calls  # main was resolved once, at revision 1
    status = expect(api.get(url), 200).json()["status"]
    assert (status["desiredRevision"], status["servingRevision"]) == (3, 3), status
