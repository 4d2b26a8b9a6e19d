"""Spec revisions and rollback, through the API, with the reconciler against the fake Kubernetes API server
and the stub Hub: the history a rollout leaves, what a rollback restores (spec and model commit, never
resolved again), and what it refuses (unknown or never-served revisions, quota, roles, tenants, deleting,
secret values no longer stored)."""

import json
import secrets

import pytest
from django.core import serializers

from deployments.reconcile import endpoint_reconcile
from endpoints import services
from endpoints.models import Endpoint, EndpointEvent, EndpointRevision
from endpoints.spec import stored_spec
from quotas.models import InstanceType
from quotas.services import quota_set
from tests.factories import endpoint_spec, make_user
from tests.helpers import expect, user_api
from tests.kube_helpers import converge, deployment

URL = "/v2/endpoint/alice/web"
SERVER = {"custom": {"url": "ghcr.io/acme/server:1", "healthRoute": "/health", "port": 8080}}


def image(tag: str) -> dict:
    return {"custom": {**SERVER["custom"], "url": f"ghcr.io/acme/server:{tag}"}}


def revisions(api) -> list[dict]:
    return expect(api.get(f"{URL}/revisions"), 200).json()["items"]


def outcomes(api) -> dict[int, str]:
    return {r["revision"]: r["outcome"] for r in revisions(api)}


def fetched_sha(kube) -> str:
    """The commit the pods' model fetcher downloads (``hf download <repo> --revision <sha>``)."""
    command = deployment(kube)["spec"]["template"]["spec"]["initContainers"][0]["command"]
    return command[command.index("--revision") + 1]


def created(api, **model) -> Endpoint:
    body = expect(api.post("/v2/endpoint/alice", endpoint_spec("web", model={"image": SERVER, **model}),
                           format="json"), 202).json()
    assert body["status"]["desiredRevision"] == 1 and body["status"]["servingRevision"] is None, body["status"]
    return converge(Endpoint.objects.get(name="web").pk, "running")


def test_history_of_a_rollout_and_rollbacks_restore_spec_and_commit(alice, alice_api, cluster, fake_kube, fake_hub):
    planted = f"planted-{secrets.token_hex(8)}"
    endpoint = created(alice_api, env={"MODE": "a"}, secrets={"TOKEN": planted})
    (first,) = revisions(alice_api)
    assert (first["revision"], first["outcome"], first["pinnedRevision"]) == (1, "serving", "1" * 40), first
    assert first["servedAt"] is not None and first["changedBy"] == "alice" and first["image"] == "ghcr.io/acme/server:1"
    assert first["secrets"]["keys"] == ["TOKEN"] and len(first["secrets"]["version"]) == 16, first["secrets"]

    # An update of the image, the env and the model revision: revision 2 serves, 1 is superseded.
    expect(alice_api.put(URL, {"model": {"image": image("2"), "env": {"MODE": "b"}, "revision": "v1"}},
                         format="json"), 200)
    endpoint = converge(endpoint.pk, "running")
    assert outcomes(alice_api) == {2: "serving", 1: "superseded"}
    status = expect(alice_api.get(URL), 200).json()["status"]
    assert (status["desiredRevision"], status["servingRevision"]) == (2, 2), status
    second_spec, second_sha = stored_spec(endpoint), endpoint.pinned_revision
    assert second_sha == "2" * 40 and fetched_sha(fake_kube) == "2" * 40

    # An update that crash-loops: revision 3 failed, revision 2 still serving.
    expect(alice_api.put(URL, {"model": {"image": image("crashloop")}}, format="json"), 200)
    endpoint = converge(endpoint.pk, "updateFailed")
    assert outcomes(alice_api) == {3: "failed", 2: "serving", 1: "superseded"}
    status = expect(alice_api.get(URL), 200).json()["status"]
    assert (status["desiredRevision"], status["servingRevision"], status["state"]) == (3, 2, "updateFailed"), status

    # The Hub moves on: a rollback must not resolve 'v1' (or 'main') again.
    fake_hub.repos["gpt2"].update({"main": "9" * 40, "v1": "8" * 40})
    hub_calls, generation = len(fake_hub.calls), endpoint.generation
    body = expect(alice_api.post(f"{URL}/rollback"), 200).json()
    assert body["status"]["desiredRevision"] == generation + 1 and body["status"]["servingRevision"] == 2, body
    endpoint = Endpoint.objects.get(pk=endpoint.pk)
    assert endpoint.generation == generation + 1 and endpoint.spec_generation == generation + 1
    assert stored_spec(endpoint) == second_spec and endpoint.pinned_revision == second_sha
    event = EndpointEvent.objects.filter(endpoint=endpoint).last()
    assert event.kind == "rollback" and event.actor_name == "alice", event
    assert event.diff["model.image"] == [image("crashloop"), image("2")], event.diff
    endpoint = converge(endpoint.pk, "running")
    assert endpoint.pinned_revision == "2" * 40 and fetched_sha(fake_kube) == "2" * 40
    assert len(fake_hub.calls) == hub_calls, fake_hub.calls[hub_calls:]
    fourth = revisions(alice_api)[0]
    assert (fourth["revision"], fourth["outcome"], fourth["rollbackOf"], fourth["rolledBackFrom"]) == (4, "serving", 2, 3)
    assert fourth["spec"] == second_spec and fourth["pinnedRevision"] == "2" * 40, fourth
    assert outcomes(alice_api) == {4: "serving", 3: "failed", 2: "superseded", 1: "superseded"}

    # To revision 1 by number: its spec and its commit, although 'main' now points elsewhere.
    first_spec = EndpointRevision.objects.get(endpoint=endpoint, generation=1).spec
    body = expect(alice_api.post(f"{URL}/rollback", {"revision": 1}, format="json"), 200).json()
    assert body["model"]["revision"] == "1" * 40 and body["model"]["image"] == SERVER, body["model"]
    endpoint = converge(endpoint.pk, "running")
    assert stored_spec(endpoint) == first_spec and endpoint.env == {"MODE": "a"} and endpoint.revision is None
    assert endpoint.pinned_revision == "1" * 40 and fetched_sha(fake_kube) == "1" * 40
    assert len(fake_hub.calls) == hub_calls
    assert outcomes(alice_api) == {5: "serving", 4: "rolledBack", 3: "failed", 2: "superseded", 1: "superseded"}
    assert revisions(alice_api)[0]["rollbackOf"] == 1
    status = expect(alice_api.get(URL), 200).json()["status"]
    assert (status["desiredRevision"], status["servingRevision"]) == (5, 5), status

    # The secret value came back (it was stored all along) and never shows: not in the history, not in its rows.
    assert services.endpoint_secrets(endpoint=endpoint)[0] == {"TOKEN": planted}
    assert planted not in expect(alice_api.get(f"{URL}/revisions"), 200).content.decode()
    assert planted not in serializers.serialize("json", EndpointRevision.objects.all())

    # Refusals: a revision that never served (409), an unknown one (404); neither writes anything.
    generation = Endpoint.objects.get(pk=endpoint.pk).generation
    refused = expect(alice_api.post(f"{URL}/rollback", {"revision": 3}, format="json"), 409).json()
    assert refused["code"] == "revision_not_served", refused
    missing = expect(alice_api.post(f"{URL}/rollback", {"revision": 99}, format="json"), 404).json()
    assert missing["code"] == "revision_not_found", missing
    expect(alice_api.post(f"{URL}/rollback", {"revision": 0}, format="json"), 400)
    assert Endpoint.objects.get(pk=endpoint.pk).generation == generation
    # The history is append-only and every row came from a pass that applied it.
    assert list(EndpointRevision.objects.filter(endpoint=endpoint).values_list("generation", flat=True)) == \
        [5, 4, 3, 2, 1]


def test_a_converged_endpoint_records_its_revision_once_and_intents_make_none(alice, alice_api, cluster, fake_kube,
                                                                              fake_hub):
    endpoint = created(alice_api)
    fake_kube.clear_requests()
    for _ in range(3):
        endpoint_reconcile(endpoint_id=endpoint.pk)
    assert fake_kube.writes() == [] and EndpointRevision.objects.count() == 1
    # Pause and resume bump the generation, not the spec: still revision 1, serving once running again.
    expect(alice_api.post(f"{URL}/pause"), 200)
    converge(endpoint.pk, "paused")
    expect(alice_api.post(f"{URL}/resume"), 200)
    endpoint = converge(endpoint.pk, "running")
    assert endpoint.generation == 3 and outcomes(alice_api) == {1: "serving"}
    status = expect(alice_api.get(URL), 200).json()["status"]
    assert (status["desiredRevision"], status["servingRevision"]) == (1, 1), status
    # With only one revision there is nothing before it; rolling back to the spec desired changes nothing.
    refused = expect(alice_api.post(f"{URL}/rollback"), 409).json()
    assert refused["code"] == "no_previous_revision", refused
    events = EndpointEvent.objects.count()
    body = expect(alice_api.post(f"{URL}/rollback", {"revision": 1}, format="json"), 200).json()
    assert body["status"]["desiredRevision"] == 1 and Endpoint.objects.get(pk=endpoint.pk).generation == 3, body
    assert EndpointEvent.objects.count() == events


def test_rollback_refused_by_quota_writes_nothing(alice, alice_api, cluster, fake_kube, fake_hub):
    units = InstanceType.objects.get(vendor="aws", region="us-east-1", instance_type="intel-spr",
                                     instance_size="x2").quota_units
    endpoint = created(alice_api)  # revision 1: maxReplica 1
    expect(alice_api.put(URL, {"compute": {"scaling": {"maxReplica": 3}}}, format="json"), 200)
    endpoint = converge(endpoint.pk, "running")
    expect(alice_api.put(URL, {"compute": {"scaling": {"maxReplica": 1}}}, format="json"), 200)
    endpoint = converge(endpoint.pk, "running")
    quota_set(account=alice.personal_account, accelerator="cpu", limit=2 * units)  # room for 2 replicas, not 3
    before = (endpoint.generation, EndpointEvent.objects.count(), stored_spec(endpoint))
    refused = expect(alice_api.post(f"{URL}/rollback"), 403).json()
    assert refused["code"] == "quota_exceeded", refused
    endpoint = Endpoint.objects.get(pk=endpoint.pk)
    assert (endpoint.generation, EndpointEvent.objects.count(), stored_spec(endpoint)) == before
    assert endpoint.max_replica == 1 and endpoint.rollback_of is None
    # Rolling back to revision 1 (one replica) is admitted.
    expect(alice_api.post(f"{URL}/rollback", {"revision": 1}, format="json"), 200)


def test_roles_tenants_and_deleting(alice, alice_api, cluster, fake_kube, fake_hub):
    endpoint = created(alice_api)
    expect(alice_api.put(URL, {"model": {"env": {"MODE": "b"}}}, format="json"), 200)
    converge(endpoint.pk, "running")
    reader = user_api(alice, role="read")
    assert [r["revision"] for r in revisions(reader)] == [2, 1]
    denied = expect(reader.post(f"{URL}/rollback"), 403).json()
    assert denied["code"] == "forbidden", denied
    mallory = user_api(make_user("mallory"))
    for response in (mallory.get(f"{URL}/revisions"), mallory.post(f"{URL}/rollback"),
                     alice_api.get("/v2/endpoint/alice/nothing/revisions"),
                     alice_api.post("/v2/endpoint/alice/nothing/rollback")):
        expect(response, 404)
    assert Endpoint.objects.get(pk=endpoint.pk).spec_generation == 2
    expect(alice_api.delete(URL), 200)
    refused = expect(alice_api.post(f"{URL}/rollback"), 409).json()
    assert refused["code"] == "state_conflict" and "deleted" in refused["error"], refused


def test_rollback_restores_stored_secret_values_and_names_the_ones_gone(alice, alice_api, cluster, fake_kube,
                                                                        fake_hub):
    old, new = f"old-{secrets.token_hex(8)}", f"new-{secrets.token_hex(8)}"
    endpoint = created(alice_api, secrets={"TOKEN": old, "KEEP": "k"})
    expect(alice_api.put(URL, {"model": {"secrets": {"TOKEN": new, "KEEP": "********"}}}, format="json"), 200)
    endpoint = converge(endpoint.pk, "running")
    versions = [r["secrets"]["version"] for r in revisions(alice_api)]
    assert versions[0] != versions[1], versions  # a value changed, so did the version
    generation = endpoint.generation
    refused = expect(alice_api.post(f"{URL}/rollback"), 409).json()
    assert refused["code"] == "rollback_secrets_missing" and "TOKEN" in refused["error"], refused
    assert "KEEP" not in refused["error"] and list(refused["fields"]) == ["model.secrets.TOKEN"], refused
    assert old not in json.dumps(refused) and new not in json.dumps(refused)
    assert Endpoint.objects.get(pk=endpoint.pk).generation == generation
    # Giving the old value again (an update: revision 3) makes revision 1's values stored again.
    expect(alice_api.put(URL, {"model": {"secrets": {"TOKEN": old, "KEEP": "********"}}}, format="json"), 200)
    converge(endpoint.pk, "running")
    expect(alice_api.post(f"{URL}/rollback", {"revision": 1}, format="json"), 200)
    endpoint = Endpoint.objects.get(pk=endpoint.pk)
    assert services.endpoint_secrets(endpoint=endpoint)[0] == {"TOKEN": old, "KEEP": "k"}


@pytest.mark.parametrize("body", [{"revision": "x"}, {"revision": -1}])
def test_bad_rollback_bodies_are_400(alice_api, body):
    expect(alice_api.post("/v2/endpoint/alice", endpoint_spec("web"), format="json"), 202)
    response = expect(alice_api.post(f"{URL}/rollback", body, format="json"), 400).json()
    assert "revision" in response["fields"], response
