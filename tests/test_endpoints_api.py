"""The Endpoints v2 API through the test client: every operation, its error paths, and the wire shape."""

import json

import pytest

from endpoints.models import Endpoint, EndpointEvent
from tests.factories import endpoint_spec
from tests.helpers import expect

REQUIRED_KEYS = {"name", "type", "accountId", "provider", "compute", "model", "healthRoute", "tags", "route",
                 "cacheHttpResponses", "privateService", "status"}
STATUS_KEYS = {"createdAt", "createdBy", "updatedAt", "updatedBy", "private", "state", "message", "readyReplica",
               "targetReplica", "url", "errorMessage"}


def create(api, ns="alice", **overrides):
    return api.post(f"/v2/endpoint/{ns}", endpoint_spec(**overrides), format="json")


@pytest.fixture
def created(alice_api):
    r = create(alice_api)
    assert r.status_code == 202, r.json()
    return r.json()


def queued_reconciles(broker) -> list[int]:
    """Endpoint ids of the reconcile messages waiting in the broker's default queue."""
    ids = []
    for raw in broker.messages():
        message = json.loads(raw)
        assert message["headers"]["task"] == "workers.reconcile_endpoint"
        ids.append(json.loads(__import__("base64").b64decode(message["body"]))[0][0])
    return ids


# ---------------------------------------------------------------- create / get / list
def test_create_returns_202_with_every_wire_key(created):
    assert REQUIRED_KEYS <= created.keys()
    assert STATUS_KEYS <= created["status"].keys()
    assert created["status"]["state"] == "pending"
    assert created["status"]["createdAt"].endswith("Z") and created["status"]["updatedAt"].endswith("Z")
    assert created["status"]["createdBy"]["name"] == "alice"
    assert created["model"] == {"repository": "gpt2", "revision": None, "task": None, "framework": "pytorch",
                                "image": {"huggingface": {}}, "env": {}, "secrets": {}, "command": None,
                                "args": None}
    assert created["compute"]["id"] == "aws-us-east-1-intel-spr-x2"
    assert created["compute"]["scaling"]["measure"] == {"hardwareUsage": 80.0}
    assert created["healthRoute"] == "/health"
    assert created["type"] == "authenticated"


def test_create_enqueues_one_reconcile_after_commit(alice_api, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = create(alice_api)
    assert r.status_code == 202, r.json()
    assert len(callbacks) == 1
    endpoint = Endpoint.objects.get(name="my-endpoint")
    assert queued_reconciles(broker) == [endpoint.pk]
    assert endpoint.generation == 1


def test_failed_create_enqueues_nothing(alice_api, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = create(alice_api, compute={"instanceType": "nope"})
    assert r.status_code == 400, r.content
    assert callbacks == [] and queued_reconciles(broker) == []


def test_get_and_list(alice_api, created):
    r = alice_api.get("/v2/endpoint/alice/my-endpoint")
    assert r.status_code == 200 and r.json() == created, r.content
    create(alice_api, name="second", tags=["prod"])
    r = alice_api.get("/v2/endpoint/alice")
    assert r.status_code == 200, r.content
    assert [item["name"] for item in r.json()["items"]] == ["my-endpoint", "second"]
    assert [i["name"] for i in alice_api.get("/v2/endpoint/alice?tags=prod").json()["items"]] == ["second"]


def test_list_query_count_is_constant(alice_api, django_assert_max_num_queries):
    for n in range(5):
        expect(create(alice_api, name=f"ep-{n}"), 202)
    with django_assert_max_num_queries(6):
        r = alice_api.get("/v2/endpoint/alice")
    assert len(r.json()["items"]) == 5


def test_create_custom_image_with_task_outside_managed_catalog(alice_api):
    image = {"custom": {"url": "ghcr.io/acme/vqa:1", "healthRoute": "/ready", "port": 8080,
                        "credentials": {"username": "bot", "password": "registry-pass"}}}
    r = create(alice_api, model={"task": "visual-question-answering", "image": image})
    assert r.status_code == 202, r.json()
    body = r.json()
    assert body["healthRoute"] == "/ready"
    assert body["model"]["image"]["custom"]["credentials"] == {"username": "bot", "password": "********"}
    assert "registry-pass" not in json.dumps(body)
    assert "registry-pass" not in json.dumps(Endpoint.objects.get().image)


def test_managed_image_refuses_a_task_it_cannot_serve(alice_api):
    r = create(alice_api, model={"task": "visual-question-answering"})
    assert r.status_code == 400, r.content
    assert "custom image" in r.json()["error"]
    assert "model.task" in r.json()["fields"]
    assert not Endpoint.objects.exists()


def test_duplicate_name_is_409(alice_api, created):
    r = create(alice_api)
    assert r.status_code == 409, r.content
    assert r.json()["error"] == "An endpoint with the same name already exists"
    assert Endpoint.objects.count() == 1


def test_scaling_measure_variants(alice_api):
    r = create(alice_api, compute={"scaling": {"measure": {"pendingRequests": None}}})
    assert r.status_code == 202, r.json()
    assert r.json()["compute"]["scaling"]["measure"] == {"pendingRequests": 1.5}
    assert r.json()["compute"]["scaling"]["metric"] == "pendingRequests"
    r = create(alice_api, name="ui", compute={"scaling": {"metric": "hardwareUsage",
                                                          "measure": {"hardwareUsage": 65}}})
    assert r.json()["compute"]["scaling"]["measure"] == {"hardwareUsage": 65.0}


def test_unknown_top_level_keys_are_ignored(alice_api):
    r = create(alice_api, customRouter={"tag": "x"}, experimentalFeatures={"loadBalancer": True},
               model={"fromCatalog": True})
    assert r.status_code == 202, r.json()


# ---------------------------------------------------------------- bad input: 4xx, field named, nothing written
BAD_BODIES = [
    ("name", {"name": "Bad_Name"}),
    ("name", {"name": "x" * 33}),
    ("name", {"name": "-leading"}),
    ("name", {"name": 42}),
    ("type", {"type": "secret"}),
    ("compute.accelerator", {"compute": {"accelerator": "tpu"}}),
    ("compute.instanceType", {"compute": {"instanceType": "nvidia-z9"}}),
    ("compute.instanceSize", {"compute": {"instanceSize": "x3"}}),
    ("provider.vendor", {"provider": {"vendor": "oracle"}}),
    ("provider.region", {"provider": {"region": "mars-1"}}),
    ("compute.instanceType", {"compute": {"instanceType": "intel-icl"}}),  # deprecated
    ("compute.scaling.minReplica", {"compute": {"scaling": {"minReplica": -1}}}),
    ("compute.scaling.maxReplica", {"compute": {"scaling": {"minReplica": 3, "maxReplica": 2}}}),
    ("compute.scaling.maxReplica", {"compute": {"scaling": {"maxReplica": 0}}}),
    ("compute.scaling.maxReplica", {"compute": {"scaling": {"maxReplica": "2"}}}),
    ("compute.scaling.maxReplica", {"compute": {"scaling": {"maxReplica": 1.5}}}),
    ("compute.scaling.maxReplica", {"compute": {"scaling": {"maxReplica": True}}}),
    ("compute.scaling.maxReplica", {"compute": {"scaling": {"maxReplica": 10**6}}}),
    ("compute.scaling.measure", {"compute": {"scaling": {"measure": {"gpuMagic": 3}}}}),
    ("compute.scaling.measure", {"compute": {"scaling": {"measure": {"hardwareUsage": 300}}}}),
    ("compute.scaling.scaleToZeroTimeout", {"compute": {"scaling": {"scaleToZeroTimeout": 0}}}),
    ("compute", {"compute": "big"}),
    ("model.repository", {"model": {"repository": "a" * 300}}),
    ("model.repository", {"model": {"repository": "../etc/passwd"}}),
    ("model.framework", {"model": {"framework": "jax"}}),
    ("model.image", {"model": {"image": {"tgi": {}, "vLLM": {}}}}),
    ("model.image", {"model": {"image": {"docker": {"url": "x"}}}}),
    ("model.image.tgi.url", {"model": {"image": {"tgi": {"port": 80}}}}),
    ("model.image.custom.port", {"model": {"image": {"custom": {"url": "x", "port": 70000}}}}),
    ("model.image.tgi.max=input", {"model": {"image": {"tgi": {"url": "x", "max=input": 5}}}}),
    ("model.env", {"model": {"env": {"A": 1}}}),
    ("model.env", {"model": {"env": ["A=1"]}}),
    ("model.secrets", {"model": {"secrets": "token"}}),
    ("model.command", {"model": {"command": "python app.py"}}),
    ("tags", {"tags": "prod"}),
    ("tags", {"tags": [f"t{i}" for i in range(65)]}),
    ("privateService.accountId", {"privateService": {"accountId": "abc", "region": "us-east-1"}}),
    ("privateService.region", {"privateService": {"accountId": "123456789012", "region": "ap-south-1"}}),
    ("cacheHttpResponses", {"cacheHttpResponses": "yes"}),
]


@pytest.mark.parametrize(("field", "overrides"), BAD_BODIES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_BODIES)])
def test_bad_create_body_is_400_naming_the_field(alice_api, field, overrides):
    r = create(alice_api, **overrides)
    assert r.status_code == 400, r.json()
    body = r.json()
    assert set(body) >= {"error", "code", "fields"}
    assert any(path == field or path.startswith(field + ".") for path in body["fields"]), body
    assert not Endpoint.objects.exists() and not EndpointEvent.objects.exists()


@pytest.mark.parametrize(("raw", "code"), [("not json", "parse_error"), ("[1, 2]", "invalid"), ("null", "invalid"),
                                           ("42", "invalid"), ('{"name": "a"', "parse_error"), ('"text"', "invalid")])
def test_non_object_bodies_are_400(alice_api, raw, code):
    r = alice_api.post("/v2/endpoint/alice", raw, content_type="application/json")
    assert r.status_code == 400, r.content
    body = r.json()
    assert body["code"] == code and body["error"], body
    if code == "invalid":  # valid JSON, not an object: the body as a whole is the field at fault
        assert list(body["fields"]) == ["body"], body
    assert not Endpoint.objects.exists()


def test_wrong_content_type_is_415(alice_api):
    r = alice_api.post("/v2/endpoint/alice", "name=x", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415 and "error" in r.json(), r.content


def test_oversize_body_is_413_not_500(alice_api):
    spec = endpoint_spec(model={"env": {"BIG": "x" * 300_000}})
    r = alice_api.post("/v2/endpoint/alice", spec, format="json")
    assert r.status_code in (400, 413), r.content
    assert "error" in r.json()
    assert not Endpoint.objects.exists()


# ---------------------------------------------------------------- update (deep merge)
def update(api, patch, name="my-endpoint"):
    return api.put(f"/v2/endpoint/alice/{name}", patch, format="json")


def test_update_scaling_merges_key_by_key(alice_api, created):
    r = update(alice_api, {"compute": {"scaling": {"maxReplica": 3, "minReplica": 1}}})
    assert r.status_code == 200, r.json()
    compute = r.json()["compute"]
    assert compute["scaling"]["maxReplica"] == 3
    assert compute["instanceType"] == "intel-spr" and compute["instanceSize"] == "x2"
    assert r.json()["model"]["repository"] == "gpt2"
    endpoint = Endpoint.objects.get()
    assert endpoint.generation == 2
    event = endpoint.events.get(kind="update")
    assert event.diff == {"compute.scaling.maxReplica": [1, 3]} and event.actor_name == "alice"


def test_empty_update_changes_nothing(alice_api, created):
    r = update(alice_api, {})
    assert r.status_code == 200, r.content
    assert r.json() == created
    assert Endpoint.objects.get().generation == 1
    assert not EndpointEvent.objects.filter(kind="update").exists()


def test_update_repository_keeps_other_model_fields(alice_api):
    create(alice_api, model={"task": "text-generation", "env": {"A": "1"}})
    r = update(alice_api, {"model": {"repository": "gpt2-large"}})
    model = r.json()["model"]
    assert model["repository"] == "gpt2-large" and model["task"] == "text-generation" and model["env"] == {"A": "1"}


def test_update_replaces_env_image_command_args_and_tags_whole(alice_api):
    create(alice_api, model={"env": {"A": "1", "B": "2"}, "command": ["serve"], "args": ["--x"],
                             "image": {"tgi": {"url": "ghcr.io/hf/tgi:3", "maxInputLength": 1024}}},
           tags=["a", "b"])
    r = update(alice_api, {"model": {"env": {"C": "3"}, "args": [], "image": {"tgi": {"url": "ghcr.io/hf/tgi:4"}}},
                           "tags": ["c"]})
    assert r.status_code == 200, r.json()
    model = r.json()["model"]
    assert model["env"] == {"C": "3"}
    assert model["args"] == [] and model["command"] == ["serve"]
    assert model["image"] == {"tgi": {"url": "ghcr.io/hf/tgi:4"}}
    assert r.json()["tags"] == ["c"]


def test_update_to_unknown_instance_is_400_and_writes_nothing(alice_api, created):
    r = update(alice_api, {"compute": {"instanceSize": "x64"}})
    assert r.status_code == 400 and "compute.instanceSize" in r.json()["fields"], r.content
    assert Endpoint.objects.get().generation == 1


def test_update_bad_shapes_are_400(alice_api, created):
    for patch, field in (([1], "body"), ({"compute": {"scaling": {"minReplica": 5}}}, "compute.scaling.maxReplica"),
                         ({"model": {"image": "tgi"}}, "model.image"), ({"type": None}, "type")):
        r = update(alice_api, patch)
        assert r.status_code == 400, (patch, r.json())
        assert r.json()["code"] == "invalid" and list(r.json()["fields"]) == [field], (patch, r.json())
    assert Endpoint.objects.get().generation == 1


def test_update_of_missing_endpoint_is_404(alice_api):
    r = update(alice_api, {}, name="ghost")
    assert r.status_code == 404 and r.json()["error"] == "Endpoint not found", r.content


def test_update_revision_unpins(alice_api, created):
    Endpoint.objects.update(pinned_revision="a" * 40)
    assert alice_api.get("/v2/endpoint/alice/my-endpoint").json()["model"]["revision"] == "a" * 40
    r = update(alice_api, {"model": {"revision": "v2"}})
    assert r.json()["model"]["revision"] == "v2"
    assert Endpoint.objects.get().pinned_revision is None


# ---------------------------------------------------------------- secrets
def test_secrets_are_masked_encrypted_and_replaced_whole(alice_api):
    r = create(alice_api, model={"secrets": {"API_KEY": "s3cr3t-value", "OTHER": "v2"}})
    assert r.json()["model"]["secrets"] == {"API_KEY": "********", "OTHER": "********"}
    endpoint = Endpoint.objects.get()
    assert "s3cr3t-value" not in endpoint.secrets_encrypted
    assert "s3cr3t-value" not in json.dumps([e.diff for e in endpoint.events.all()])
    r = update(alice_api, {"model": {"secrets": {"API_KEY": "********", "NEW": "n"}}})
    assert r.json()["model"]["secrets"] == {"API_KEY": "********", "NEW": "********"}
    from endpoints.services import endpoint_secrets

    secrets, _ = endpoint_secrets(endpoint=Endpoint.objects.get())
    assert secrets == {"API_KEY": "s3cr3t-value", "NEW": "n"}  # the mask kept the stored value
    events = alice_api.get("/v2/endpoint/alice/my-endpoint/events").json()
    assert "s3cr3t-value" not in json.dumps(events)
    assert events["items"][-1]["diff"]["model.secrets"] == [["API_KEY", "OTHER"], ["API_KEY", "NEW"]]


def test_update_without_secrets_keeps_them(alice_api):
    create(alice_api, model={"secrets": {"K": "v"}})
    update(alice_api, {"compute": {"scaling": {"maxReplica": 2}}})
    from endpoints.services import endpoint_secrets

    assert endpoint_secrets(endpoint=Endpoint.objects.get())[0] == {"K": "v"}


# ---------------------------------------------------------------- lifecycle
def test_pause_resume_scale_to_zero(alice_api, created):
    r = alice_api.post("/v2/endpoint/alice/my-endpoint/pause")
    assert r.status_code == 200 and r.json()["status"]["state"] == "paused" and r.json()["status"]["url"] is None, r.content
    assert alice_api.post("/v2/endpoint/alice/my-endpoint/pause").json()["status"]["state"] == "paused"
    r = alice_api.post("/v2/endpoint/alice/my-endpoint/scale-to-zero")
    assert r.status_code == 400 and "paused" in r.json()["error"], r.content
    r = alice_api.post("/v2/endpoint/alice/my-endpoint/resume")
    assert r.status_code == 200 and r.json()["status"]["state"] == "pending", r.content
    r = alice_api.post("/v2/endpoint/alice/my-endpoint/resume")
    assert r.status_code == 400 and "already running" in r.content.decode(), r.content
    r = alice_api.post("/v2/endpoint/alice/my-endpoint/scale-to-zero")
    assert r.status_code == 200 and r.json()["status"]["state"] == "scaledToZero", r.content
    r = alice_api.post("/v2/endpoint/alice/my-endpoint/resume")
    assert r.json()["status"]["state"] == "pending"
    kinds = list(Endpoint.objects.get().events.values_list("kind", flat=True))
    assert kinds == ["create", "pause", "resume", "scaleToZero", "resume"]


def test_actions_accept_an_empty_body_without_content_type(alice_api, created):
    r = alice_api.generic("POST", "/v2/endpoint/alice/my-endpoint/pause", "", content_type="")
    assert r.status_code == 200, r.content


def test_delete_of_unapplied_endpoint_removes_row_and_events(alice_api, created):
    r = alice_api.delete("/v2/endpoint/alice/my-endpoint")
    assert r.status_code == 200 and r.json() == {}, r.content
    assert not Endpoint.objects.exists() and not EndpointEvent.objects.exists()
    expect(alice_api.get("/v2/endpoint/alice/my-endpoint"), 404)
    expect(alice_api.delete("/v2/endpoint/alice/my-endpoint"), 404)


def test_delete_of_applied_endpoint_waits_for_the_reconciler(alice_api, created, broker,
                                                             django_capture_on_commit_callbacks):
    from django.utils import timezone

    Endpoint.objects.update(first_applied_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_api.delete("/v2/endpoint/alice/my-endpoint")
    assert r.status_code == 200, r.content
    assert alice_api.get("/v2/endpoint/alice/my-endpoint").json()["status"]["state"] == "deleting"
    endpoint = Endpoint.objects.get()
    assert queued_reconciles(broker) == [endpoint.pk]
    for path, method in (("", "put"), ("/pause", "post"), ("/resume", "post"), ("/scale-to-zero", "post")):
        r = getattr(alice_api, method)(f"/v2/endpoint/alice/my-endpoint{path}", {}, format="json")
        assert r.status_code == 409, (path, r.json())
    expect(alice_api.delete("/v2/endpoint/alice/my-endpoint"), 200)  # repeat is a no-op
    expect(create(alice_api), 409)  # the name stays taken until the row is gone


def test_events_endpoint(alice_api, created):
    update(alice_api, {"compute": {"scaling": {"maxReplica": 2}}})
    items = alice_api.get("/v2/endpoint/alice/my-endpoint/events").json()["items"]
    assert [i["kind"] for i in items] == ["create", "update"]
    assert items[0]["diff"]["model.repository"] == [None, "gpt2"]
    assert all(i["createdAt"].endswith("Z") and i["actor"] == "alice" for i in items)
