"""The inference catalog API (/api/v1/catalog) through the test client, on the seeded catalog: the list and
its filters, deploys by model and by recipe (admitted, audited, scoped like any create), their refusals,
and the checks that keep a recipe deployable."""

import re

import pytest
from django.core.exceptions import ValidationError

from controlplane.models import AuditEvent
from controlplane.names import ENDPOINT_NAME_RE
from deployments.render import REPOSITORY_DIR
from endpoints.catalog import MODEL_DIR, recipe_spec_errors
from endpoints.catalog_models import CatalogModel, CatalogRecipe
from endpoints.models import Endpoint, EndpointEvent
from quotas.models import InstanceType
from quotas.services import quota_set
from tests.factories import make_org, make_user
from tests.helpers import api_client, expect, user_api

pytestmark = pytest.mark.django_db

LIST = "/api/v1/catalog/list"
GGUF = "Qwen/Qwen2.5-1.5B-Instruct-GGUF"
SEEDED = ["BAAI/bge-small-en-v1.5", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
          "Qwen/Qwen2.5-7B-Instruct"]  # by repository id, ignoring case


def model_deploy(api, repo_id: str, body: dict):
    return api.post(f"/api/v1/catalog/model/{repo_id}/deploy", body, format="json")


def recipe_deploy(api, recipe_id: str, body: dict):
    return api.post(f"/api/v1/catalog/recipe/{recipe_id}/deploy", body, format="json")


def listed(api, query: str = "") -> list[dict]:
    return expect(api.get(f"{LIST}{query}"), 200).json()["items"]


def rows(items: list[dict]) -> list[tuple[str, str]]:
    """(repoId, publicId) of every listed recipe, in order."""
    return [(item["repoId"], recipe["publicId"]) for item in items for recipe in item["recipes"]]


def nothing_deployed() -> None:
    assert not Endpoint.objects.exists()
    assert not AuditEvent.objects.filter(action="catalog.deploy").exists()


# ---------------------------------------------------------------- list
def test_the_seeded_catalog_lists_each_model_with_the_keys_the_client_reads(alice_api):
    items = listed(alice_api)
    assert [item["repoId"] for item in items] == SEEDED
    qwen = items[3]
    assert {k: v for k, v in qwen.items() if k not in ("recipes", "createdAt")} == {
        "repoId": "Qwen/Qwen2.5-7B-Instruct", "modelName": "Qwen2.5-7B-Instruct", "authorName": "Qwen",
        "license": "Apache 2.0", "task": "text-generation"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", qwen["createdAt"])
    assert qwen["recipes"][0] == {
        "publicId": "zesty-laksa-r8n5c1ej", "accelerator": "gpu", "engineType": "vllm", "ggufFile": None,
        "revision": None, "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {"id": "aws-us-east-1-nvidia-l4-x1", "instanceType": "nvidia-l4", "instanceSize": "x1"}}
    gguf = items[2]
    assert [(r["publicId"], r["accelerator"], r["engineType"], r["ggufFile"]) for r in gguf["recipes"]] == [
        ("crispy-dumpling-f5z8q3lo", "cpu", "llamacpp", "qwen2.5-1.5b-instruct-q4_k_m.gguf"),
        ("savory-pierogi-w1j4x7nk", "cpu", "llamacpp", "qwen2.5-1.5b-instruct-q8_0.gguf"),
        ("spicy-curry-m6d2r8va", "gpu", "llamacpp", "qwen2.5-1.5b-instruct-q8_0.gguf")]


def test_a_read_token_lists_the_catalog_and_no_token_is_401(alice):
    assert [item["repoId"] for item in listed(user_api(alice, "read"))] == SEEDED
    r = expect(api_client().get(LIST), 401)
    assert r.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(("query", "expected"), [
    # accelerator and engine keep only the matching recipes of the models that have one
    ("?accelerator=cpu", [("BAAI/bge-small-en-v1.5", "mellow-pho-t9c3k5wb"), (GGUF, "crispy-dumpling-f5z8q3lo"),
                          (GGUF, "savory-pierogi-w1j4x7nk")]),
    ("?engine=tei", [("BAAI/bge-small-en-v1.5", "mellow-pho-t9c3k5wb"),
                     ("BAAI/bge-small-en-v1.5", "toasty-falafel-h4q7y2ps")]),
    ("?engine=llamacpp&accelerator=gpu", [(GGUF, "spicy-curry-m6d2r8va")]),
    ("?engine=sglang", []),
    ("?license=mit", [("BAAI/bge-small-en-v1.5", "mellow-pho-t9c3k5wb"),
                      ("BAAI/bge-small-en-v1.5", "toasty-falafel-h4q7y2ps")]),
    ("?task=text-generation&search=llama&accelerator=gpu",
     [("meta-llama/Llama-3.1-8B-Instruct", "smoky-paella-k3v9t2qd"),
      ("meta-llama/Llama-3.1-8B-Instruct", "golden-risotto-p7w2m4xa")]),
    ("?search=QWEN&limit=1", [(GGUF, "crispy-dumpling-f5z8q3lo"), (GGUF, "savory-pierogi-w1j4x7nk"),
                              (GGUF, "spicy-curry-m6d2r8va")]),
    ("?task=sentence-embeddings&engine=vllm", []),
])
def test_list_filters(alice_api, query, expected):
    assert rows(listed(alice_api, query)) == expected


def test_license_filter_is_case_insensitive_and_exact(alice_api):
    assert [i["repoId"] for i in listed(alice_api, "?license=apache%202.0")] == SEEDED[2:]
    assert listed(alice_api, "?license=apache") == []


@pytest.mark.parametrize(("query", "field"), [
    ("?accelerator=tpu", "accelerator"), ("?engine=tgi", "engine"), ("?limit=0", "limit"), ("?limit=x", "limit"),
    ("?limit=1001", "limit"), (f"?search={'a' * 257}", "search"),
])
def test_bad_list_queries_are_400_naming_the_parameter(alice_api, query, field):
    r = expect(alice_api.get(f"{LIST}{query}"), 400)
    assert r.json()["code"] == "invalid" and list(r.json()["fields"]) == [field], r.json()


def test_disabled_models_and_recipes_and_unorderable_instances_are_not_listed(alice_api):
    CatalogModel.objects.filter(repo_id="Qwen/Qwen2.5-7B-Instruct").update(enabled=False)
    CatalogRecipe.objects.filter(public_id="mellow-pho-t9c3k5wb").update(enabled=False)
    InstanceType.objects.filter(instance_type="nvidia-t4").update(status=InstanceType.Status.DEPRECATED)
    got = rows(listed(alice_api))
    assert ("Qwen/Qwen2.5-7B-Instruct", "zesty-laksa-r8n5c1ej") not in got
    assert not {"mellow-pho-t9c3k5wb", "toasty-falafel-h4q7y2ps", "spicy-curry-m6d2r8va"} & {p for _, p in got}
    # bge has no listed recipe left, so the model itself is gone; the others keep theirs
    assert [i["repoId"] for i in listed(alice_api)] == ["meta-llama/Llama-3.1-8B-Instruct", GGUF]
    # and what is not listed cannot be deployed
    r = expect(recipe_deploy(alice_api, "spicy-curry-m6d2r8va", {"namespace": "alice"}), 404)
    assert r.json()["code"] == "catalog_not_found"
    r = expect(model_deploy(alice_api, "Qwen/Qwen2.5-7B-Instruct", {"namespace": "alice"}), 404)
    assert r.json()["code"] == "catalog_not_found"
    nothing_deployed()


# ---------------------------------------------------------------- deploy by model
def test_deploy_a_model_creates_its_default_recipe_as_an_endpoint(alice, alice_api):
    r = expect(model_deploy(alice_api, GGUF, {"namespace": "alice"}), 202)
    body = r.json()["endpoint"]
    endpoint = Endpoint.objects.get()
    assert body["name"] == endpoint.name and ENDPOINT_NAME_RE.fullmatch(endpoint.name)
    assert endpoint.name.startswith("qwen2-5-1-5b-instruct-gguf-") and len(endpoint.name) == 32
    assert (endpoint.account, endpoint.instance.compute_id) == (alice.personal_account, "aws-us-east-1-intel-spr-x4")
    assert (body["status"]["state"], body["status"]["createdBy"]["name"]) == ("pending", "alice")
    assert body["model"]["repository"] == GGUF and body["model"]["task"] == "text-generation"
    assert body["model"]["image"] == {"llamacpp": {
        "url": "ghcr.io/ggml-org/llama.cpp:server", "host": "0.0.0.0", "ctxSize": 8192, "threads": 4,
        "model": "/repository/qwen2.5-1.5b-instruct-q4_k_m.gguf"}}
    assert body["compute"]["scaling"]["minReplica"] == 1 and body["compute"]["scaling"]["maxReplica"] == 1
    # the same endpoint the v2 API shows, with its create event and the catalog audit record
    assert expect(alice_api.get(f"/v2/endpoint/alice/{endpoint.name}"), 200).json() == body
    assert list(EndpointEvent.objects.filter(endpoint=endpoint).values_list("kind", "actor_name")) == [
        ("create", "alice")]
    audit = AuditEvent.objects.get(action="catalog.deploy")
    assert (audit.account, audit.actor, audit.target) == (alice.personal_account, alice, endpoint.name)
    assert audit.diff == {"recipe": [None, "crispy-dumpling-f5z8q3lo"], "model.repository": [None, GGUF]}


@pytest.mark.parametrize(("extra", "recipe", "instance"), [
    ({"ggufFile": "qwen2.5-1.5b-instruct-q8_0.gguf"}, "savory-pierogi-w1j4x7nk", "aws-us-east-1-intel-spr-x4"),
    ({"accelerator": "gpu"}, "spicy-curry-m6d2r8va", "aws-us-east-1-nvidia-t4-x1"),
    ({"accelerator": "gpu", "ggufFile": "qwen2.5-1.5b-instruct-q8_0.gguf"}, "spicy-curry-m6d2r8va",
     "aws-us-east-1-nvidia-t4-x1"),
    ({"accelerator": None, "ggufFile": None}, "crispy-dumpling-f5z8q3lo", "aws-us-east-1-intel-spr-x4"),
])
def test_accelerator_and_gguf_file_pick_the_recipe(alice_api, extra, recipe, instance):
    r = expect(model_deploy(alice_api, GGUF, {"namespace": "alice", "config": {"name": "picked"}, **extra}), 202)
    assert r.json()["endpoint"]["name"] == "picked"
    assert r.json()["endpoint"]["compute"]["id"] == instance
    assert AuditEvent.objects.get(action="catalog.deploy").diff["recipe"] == [None, recipe]


def test_the_gpu_recipe_scales_to_zero_when_idle(alice_api):
    body = expect(model_deploy(alice_api, GGUF, {"namespace": "alice", "accelerator": "gpu"}), 202).json()["endpoint"]
    assert body["model"]["image"]["llamacpp"]["nGpuLayers"] == 99
    assert (body["compute"]["scaling"]["minReplica"], body["compute"]["scaling"]["scaleToZeroTimeout"]) == (0, 15)


@pytest.mark.parametrize(("extra", "field", "says"), [
    ({"accelerator": "neuron"}, "accelerator", "has: cpu, gpu"),
    ({"accelerator": "gpu", "ggufFile": "qwen2.5-1.5b-instruct-q4_k_m.gguf"}, "ggufFile",
     "has: qwen2.5-1.5b-instruct-q8_0.gguf"),
    ({"ggufFile": "nope.gguf"}, "ggufFile", "qwen2.5-1.5b-instruct-q4_k_m.gguf, qwen2.5-1.5b-instruct-q8_0.gguf"),
])
def test_no_matching_recipe_is_400_naming_the_field(alice_api, extra, field, says):
    r = expect(model_deploy(alice_api, GGUF, {"namespace": "alice", **extra}), 400)
    assert r.json()["code"] == "no_matching_recipe" and list(r.json()["fields"]) == [field], r.json()
    assert says in r.json()["error"]
    nothing_deployed()


def test_a_gguf_file_on_a_model_without_gguf_recipes_says_so(alice_api):
    r = expect(model_deploy(alice_api, "Qwen/Qwen2.5-7B-Instruct", {"namespace": "alice", "ggufFile": "x.gguf"}), 400)
    assert r.json()["fields"] == {"ggufFile": ["'Qwen/Qwen2.5-7B-Instruct' has no recipe with ggufFile 'x.gguf'; "
                                               "it has none with a ggufFile"]}
    nothing_deployed()


def test_unknown_model_and_recipe_are_404(alice_api):
    for r in (model_deploy(alice_api, "nobody/nothing", {"namespace": "alice"}),
              model_deploy(alice_api, "gpt2", {"namespace": "alice"}),
              recipe_deploy(alice_api, "no-such-recipe", {"namespace": "alice"})):
        expect(r, 404)
        assert r.json()["code"] == "catalog_not_found", r.json()
    nothing_deployed()


# ---------------------------------------------------------------- deploy by recipe
def test_deploy_a_recipe(alice_api):
    r = expect(recipe_deploy(alice_api, "mellow-pho-t9c3k5wb", {"namespace": "alice", "config": {"name": "embed"}}),
               202)
    body = r.json()["endpoint"]
    assert (body["name"], body["model"]["repository"], body["model"]["task"]) == (
        "embed", "BAAI/bge-small-en-v1.5", "sentence-embeddings")
    assert body["model"]["image"] == {"tei": {"url": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8"}}
    assert body["compute"]["id"] == "aws-us-east-1-intel-spr-x2"
    assert Endpoint.objects.get().name == "embed"


def test_a_vllm_recipe_passes_its_arguments(alice_api):
    body = expect(recipe_deploy(alice_api, "golden-risotto-p7w2m4xa", {"namespace": "alice"}), 202).json()["endpoint"]
    assert body["model"]["image"] == {"vLLM": {"url": "vllm/vllm-openai:v0.10.2"}}
    assert body["model"]["args"] == ["--model", "/repository", "--served-model-name",
                                     "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "32768",
                                     "--gpu-memory-utilization", "0.9"]
    assert body["compute"]["id"] == "aws-us-east-1-nvidia-l40s-x1"
    assert body["name"].startswith("llama-3-1-8b-instruct-")


@pytest.mark.parametrize("field", ["accelerator", "ggufFile"])
def test_a_recipe_deploy_refuses_what_only_a_model_deploy_takes(alice_api, field):
    r = expect(recipe_deploy(alice_api, "mellow-pho-t9c3k5wb", {"namespace": "alice", field: "cpu"}), 400)
    assert list(r.json()["fields"]) == [field], r.json()
    nothing_deployed()


# ---------------------------------------------------------------- admission, names, scope
def test_quota_refusal_is_403_and_writes_nothing(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=3)  # the default recipe needs 4 vCPUs
    r = expect(model_deploy(alice_api, GGUF, {"namespace": "alice"}), 403)
    assert r.json()["code"] == "quota_exceeded" and r["X-Error-Message"] == r.json()["error"]
    r = expect(recipe_deploy(alice_api, "savory-pierogi-w1j4x7nk", {"namespace": "alice"}), 403)
    assert r.json()["code"] == "quota_exceeded"
    nothing_deployed()
    # a recipe that fits is admitted
    expect(recipe_deploy(alice_api, "mellow-pho-t9c3k5wb", {"namespace": "alice"}), 202)


def test_a_taken_name_is_409_naming_config_name(alice_api):
    expect(recipe_deploy(alice_api, "mellow-pho-t9c3k5wb", {"namespace": "alice", "config": {"name": "mine"}}), 202)
    r = expect(model_deploy(alice_api, GGUF, {"namespace": "alice", "config": {"name": "mine"}}), 409)
    assert r.json()["code"] == "name_taken" and list(r.json()["fields"]) == ["config.name"], r.json()
    assert Endpoint.objects.count() == 1 and AuditEvent.objects.filter(action="catalog.deploy").count() == 1


def test_deploy_scope_is_the_create_endpoint_scope(alice):
    bob = make_user("bob")
    make_org("readers", members={alice: "read"})
    make_org("writers", members={alice: "write"})
    body = {"namespace": "alice"}
    r = expect(model_deploy(api_client(), GGUF, body), 401)
    assert r.json()["code"] == "unauthenticated"
    r = expect(model_deploy(user_api(alice, "read"), GGUF, body), 403)
    assert r.json()["code"] == "forbidden" and "write access is required" in r.json()["error"]
    r = expect(recipe_deploy(user_api(alice, "read"), "mellow-pho-t9c3k5wb", body), 403)
    assert r.json()["code"] == "forbidden"
    writer = user_api(alice)
    for namespace, status in (("bob", 404), ("readers", 403), ("nobody-here", 404)):
        r = expect(model_deploy(writer, GGUF, {"namespace": namespace}), status, namespace)
        assert r.json()["code"] == ("not_found" if status == 404 else "forbidden")
    nothing_deployed()
    # another tenant's namespace answers as one that does not exist
    assert model_deploy(writer, GGUF, {"namespace": "bob"}).json() == {"error": "Namespace 'bob' not found",
                                                                       "code": "not_found"}
    expect(model_deploy(writer, GGUF, {"namespace": "writers"}), 202)
    endpoint = Endpoint.objects.get()
    assert endpoint.account.slug == "writers" and endpoint.created_by == alice
    assert not Endpoint.objects.filter(account=bob.personal_account).exists()


@pytest.mark.parametrize(("body", "field"), [
    ({}, "namespace"),
    ({"namespace": 7}, "namespace"),
    ({"namespace": None}, "namespace"),
    ([{"namespace": "alice"}], "body"),
    ({"namespace": "alice", "config": {"name": "Not_A_Name"}}, "config.name"),
    ({"namespace": "alice", "config": {"name": "x" * 33}}, "config.name"),
    ({"namespace": "alice", "config": "name"}, "config"),
    ({"namespace": "alice", "accelerator": "tpu"}, "accelerator"),
    ({"namespace": "alice", "ggufFile": 4}, "ggufFile"),
])
def test_bad_bodies_are_400_naming_the_field(alice_api, body, field):
    r = expect(model_deploy(alice_api, GGUF, body), 400)
    assert r.json()["code"] == "invalid" and field in r.json()["fields"], r.json()
    nothing_deployed()


# ---------------------------------------------------------------- recipes stay deployable
def test_every_seeded_recipe_passes_its_checks():
    recipes = list(CatalogRecipe.objects.select_related("model", "instance"))
    assert len(recipes) == 9
    for recipe in recipes:
        recipe.full_clean()
        assert recipe_spec_errors(recipe) == {}, recipe.public_id


def test_the_gguf_path_is_where_the_repository_is_downloaded():
    assert MODEL_DIR == REPOSITORY_DIR


@pytest.mark.parametrize(("changes", "field"), [
    ({"gguf_file": ""}, "gguf_file"),                                   # llama.cpp needs its file
    ({"engine": "vllm"}, "gguf_file"),                                  # only llama.cpp takes one
    ({"min_replica": 2}, "max_replica"),
    ({"engine_options": {"ctxSize": [1]}}, "engine_options"),
    ({"engine_options": {"model": "/elsewhere"}}, "engine_options"),    # set from the GGUF file
    ({"engine_options": {"bad-name": 1}}, "engine_options"),
    ({"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}, "env"),                # device selection is the platform's
    ({"env": ["A"]}, "env"),
    ({"args": "--x"}, "args"),
    ({"image_url": ""}, "image_url"),
    ({"public_id": "Upper_Case"}, "public_id"),
    ({"engine": "tgi", "gguf_file": ""}, "engine"),
    ({"args": ["--port", 8081]}, "args"),
])
def test_a_recipe_that_would_not_deploy_is_refused_on_save(changes, field):
    recipe = CatalogRecipe.objects.select_related("model", "instance").get(public_id="crispy-dumpling-f5z8q3lo")
    for name, value in changes.items():
        setattr(recipe, name, value)
    with pytest.raises(ValidationError) as exc:
        recipe.full_clean()
    assert field in exc.value.message_dict, exc.value.message_dict


def test_a_recipe_on_an_instance_that_cannot_be_ordered_is_refused_on_save():
    recipe = CatalogRecipe.objects.get(public_id="mellow-pho-t9c3k5wb")
    recipe.instance = InstanceType.objects.get(vendor="aws", region="us-east-1", instance_type="intel-icl",
                                               instance_size="x2")
    with pytest.raises(ValidationError) as exc:
        recipe.full_clean()
    assert exc.value.message_dict == {"instance": ["aws-us-east-1-intel-icl-x2 is deprecated."]}


def test_the_admin_saves_a_model_with_an_inline_recipe_and_refuses_a_bad_one(db):
    operator = make_user("root", is_staff=True)
    admin = api_client(session_user=operator)
    instance = InstanceType.objects.get(vendor="aws", region="us-east-1", instance_type="intel-spr", instance_size="x2")
    form = {"repo_id": "sentence-transformers/all-MiniLM-L6-v2", "task": "sentence-embeddings", "license": "Apache 2.0",
            "enabled": "on", "created_at_0": "2026-01-01", "created_at_1": "00:00:00",
            "recipes-TOTAL_FORMS": "1", "recipes-INITIAL_FORMS": "0", "recipes-MIN_NUM_FORMS": "0",
            "recipes-MAX_NUM_FORMS": "1000", "recipes-0-public_id": "mellow-minilm-a1b2c3d4", "recipes-0-position": "0",
            "recipes-0-enabled": "on", "recipes-0-instance": str(instance.pk), "recipes-0-engine": "tei",
            "recipes-0-image_url": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
            "recipes-0-gguf_file": "model.gguf", "recipes-0-engine_options": "{}", "recipes-0-args": "null",
            "recipes-0-env": "{}", "recipes-0-min_replica": "1", "recipes-0-max_replica": "1"}
    r = expect(admin.post("/admin/endpoints/catalogmodel/add/", form), 200)  # the form again, with the error
    assert "Only llama.cpp recipes serve a GGUF file." in r.content.decode()
    assert not CatalogModel.objects.filter(repo_id="sentence-transformers/all-MiniLM-L6-v2").exists()
    expect(admin.post("/admin/endpoints/catalogmodel/add/", {**form, "recipes-0-gguf_file": ""}), 302)
    recipe = CatalogRecipe.objects.get(public_id="mellow-minilm-a1b2c3d4")
    assert (recipe.model.repo_id, recipe.instance, recipe.engine) == (
        "sentence-transformers/all-MiniLM-L6-v2", instance, "tei")
    assert ("sentence-transformers/all-MiniLM-L6-v2", "mellow-minilm-a1b2c3d4") in rows(
        listed(user_api(operator), "?search=minilm"))
