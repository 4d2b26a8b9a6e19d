"""The real, unmodified ``huggingface_hub`` 2.4.0 client and ``hf endpoints`` CLI against a live server.

The library is redirected in-process; the CLI runs as a subprocess with
``scripts/hfclient/sitecustomize.py`` on ``PYTHONPATH`` (B§1.2 option 1). In both, the client's shared HTTP
session refuses any request to a host other than the live server, so nothing leaves the machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import HfApi, InferenceCatalogModel, InferenceCatalogRecipe, InferenceEndpoint, constants
from huggingface_hub.errors import BadRequestError, HfHubHTTPError

from endpoints.models import Endpoint
from quotas.models import InstanceType
from quotas.services import quota_set
from tests.factories import make_org, make_token, make_user
from tests.hfclient import origin, redirected

HFCLIENT_DIR = Path(__file__).resolve().parent.parent / "scripts" / "hfclient"
HF_BIN = Path(sys.executable).parent / "hf"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

assert huggingface_hub.__version__ == "2.4.0", huggingface_hub.__version__


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def people():
    """alice (personal namespace ``alice``) is a writer in org ``acme``. (tests/conftest.py re-seeds the
    instance catalog that transactional tests flush.)"""
    assert InstanceType.objects.filter(vendor="aws", region="us-east-1", instance_type="intel-spr").count() == 5
    alice = make_user("alice", email="alice@example.com")
    acme = make_org("acme", members={alice: "write"})
    return {"alice": alice, "acme": acme, "token": make_token(alice), "implicit_token": make_token(alice)}


@pytest.fixture
def hub(live_server, people, monkeypatch, tmp_path):
    """The in-process client redirected to the live server, its HTTP session guarded (``tests.hfclient``)."""
    base = live_server.url.rstrip("/")
    with redirected(monkeypatch, tmp_path, base, people["implicit_token"]) as guard:
        yield {"base": base, **guard, "token": people["token"], **people}


def _create(api: HfApi, name: str, **kwargs) -> InferenceEndpoint:
    args = {"repository": "gpt2", "framework": "pytorch", "accelerator": "cpu", "vendor": "aws",
            "region": "us-east-1", "instance_size": "x2", "instance_type": "intel-spr"} | kwargs
    return api.create_inference_endpoint(name, **args)


# --------------------------------------------------------------------------------------------- library


def test_guard_refuses_other_hosts(hub):
    """The guard itself: a request to the real Hub is refused before any connection is made."""
    with pytest.raises(RuntimeError, match="left the test server"):
        HfApi(endpoint="https://huggingface.co", token=hub["token"]).whoami()
    assert hub["refused"] == ["GET https://huggingface.co/api/whoami-v2"]
    hub["refused"].clear()


def test_library_full_lifecycle(hub, monkeypatch):
    api = HfApi(token=hub["token"])

    # whoami through an explicit instance and through the module-level ``api`` (implicit HF_TOKEN)
    me = api.whoami()
    assert (me["type"], me["name"]) == ("user", "alice")
    assert [org["name"] for org in me["orgs"]] == ["acme"]
    assert huggingface_hub.whoami()["name"] == "alice"

    # create with the client defaults (type authenticated, 1..1 replicas, image huggingface)
    ep = _create(api, "lib-ep")
    assert isinstance(ep, InferenceEndpoint)
    assert (ep.name, ep.namespace, ep.repository, ep.framework) == ("lib-ep", "alice", "gpt2", "pytorch")
    assert ep.status == "pending"
    assert ep.type == "authenticated"
    assert ep.url is None
    assert ep.raw["provider"] == {"vendor": "aws", "region": "us-east-1"}
    assert ep.raw["compute"]["instanceType"] == "intel-spr" and ep.raw["compute"]["instanceSize"] == "x2"
    assert ep.raw["compute"]["scaling"]["minReplica"] == 1 and ep.raw["compute"]["scaling"]["maxReplica"] == 1
    assert ep.raw["model"]["image"] == {"huggingface": {}}
    assert ep.created_at.tzinfo is not None and ep.updated_at >= ep.created_at
    assert ep.health_route == "/health" and ep.task is None and ep.revision is None
    assert ep.raw["status"]["createdBy"]["name"] == "alice"
    assert (ep.raw["status"]["readyReplica"], ep.raw["status"]["targetReplica"]) == (0, 0)

    # the org namespace, then get
    org_ep = _create(api, "org-ep", namespace="acme", min_replica=0, max_replica=1)
    assert (org_ep.namespace, org_ep.status) == ("acme", "pending")

    got = api.get_inference_endpoint("lib-ep")
    assert (got.name, got.namespace, got.repository, got.status) == ("lib-ep", "alice", "gpt2", "pending")
    assert got.raw["compute"] == ep.raw["compute"]
    assert api.get_inference_endpoint("org-ep", namespace="acme").raw["compute"]["scaling"]["minReplica"] == 0

    # list: own namespace only, then "*" (personal through the module-level api, then every org)
    assert [(e.name, e.namespace) for e in api.list_inference_endpoints()] == [("lib-ep", "alice")]
    everywhere = {(e.name, e.namespace) for e in api.list_inference_endpoints(namespace="*")}
    assert everywhere == {("lib-ep", "alice"), ("org-ep", "acme")}
    assert [e.name for e in api.list_inference_endpoints(namespace="acme")] == ["org-ep"]

    # partial updates: scaling through HfApi, repository through the object (fresh HfApi(), implicit token)
    updated = api.update_inference_endpoint("lib-ep", min_replica=1, max_replica=2)
    assert updated.raw["compute"]["scaling"]["minReplica"] == 1
    assert updated.raw["compute"]["scaling"]["maxReplica"] == 2
    assert updated.raw["compute"]["instanceSize"] == "x2"  # deep merge kept the rest
    assert updated.repository == "gpt2"
    updated.update(repository="openai-community/gpt2-medium")
    assert updated.repository == "openai-community/gpt2-medium"
    assert updated.raw["model"]["repository"] == "openai-community/gpt2-medium"
    assert updated.raw["compute"]["scaling"]["maxReplica"] == 2  # the first update survived the second
    assert updated.framework == "pytorch"
    refetched = api.get_inference_endpoint("lib-ep").fetch()  # fetch(): a fresh HfApi() with the implicit token
    assert refetched.repository == "openai-community/gpt2-medium"
    assert refetched.raw["compute"]["scaling"] == updated.raw["compute"]["scaling"]

    # pause / resume / resume again
    paused = api.pause_inference_endpoint("lib-ep")
    assert paused.status == "paused" and paused.url is None
    assert api.get_inference_endpoint("lib-ep").status == "paused"
    resumed = paused.resume()
    assert resumed.status == "pending"
    again = api.resume_inference_endpoint("lib-ep")  # running_ok=True: the 400 "already running" is swallowed
    assert (again.name, again.status) == ("lib-ep", "pending")
    with pytest.raises(HfHubHTTPError) as exc:
        api.resume_inference_endpoint("lib-ep", running_ok=False)
    assert exc.value.response.status_code == 400, exc.value.response.text
    assert isinstance(exc.value, BadRequestError)
    assert "already running" in exc.value.response.text
    assert "already running" in (exc.value.server_message or "")

    # scale to zero
    zeroed = api.scale_to_zero_inference_endpoint("lib-ep")
    assert zeroed.status == "scaledToZero"
    assert api.get_inference_endpoint("lib-ep").status == "scaledToZero"

    # the client quirk: objects returned by HfApi(token=...) carry no token and use the implicit one
    with monkeypatch.context() as m:
        m.delenv("HF_TOKEN")
        assert api.get_inference_endpoint("org-ep", namespace="acme").name == "org-ep"  # explicit token
        with pytest.raises(HfHubHTTPError) as exc:
            org_ep.fetch()  # fresh HfApi(), no HF_TOKEN: no Authorization header at all
        assert exc.value.response.status_code == 401, exc.value.response.text
        assert exc.value.server_message == "A valid user or organization token, sent as a Bearer, is required"

    # delete, then 404 (no cluster ever held it, so the row goes at once)
    assert api.delete_inference_endpoint("lib-ep") is None
    with pytest.raises(HfHubHTTPError) as exc:
        api.get_inference_endpoint("lib-ep")
    assert exc.value.response.status_code == 404, exc.value.response.text
    assert exc.value.server_message == "Endpoint not found"
    assert [e.name for e in api.list_inference_endpoints()] == []
    org_ep.delete()  # the object's own api and the implicit token
    assert api.list_inference_endpoints(namespace="*") == []


def test_library_hardware(hub):
    api = HfApi(token=hub["token"])
    hardware = api.list_inference_endpoints_hardware()
    assert hardware, "no computes"
    vendors = {hw.vendor for hw in hardware}
    assert {"aws", "azure", "gcp"} <= vendors
    by_id = {(hw.vendor, hw.region, hw.instance_type, hw.instance_size): hw for hw in hardware}
    spr_x2 = by_id[("aws", "us-east-1", "intel-spr", "x2")]
    assert spr_x2.accelerator == "cpu" and spr_x2.num_accelerators == 2
    assert (spr_x2.max_accelerators, spr_x2.used_accelerators) == (32, 0)
    l4 = by_id[("aws", "us-east-1", "nvidia-l4", "x1")]
    assert l4.accelerator == "gpu" and l4.num_accelerators == 1

    # usage is reflected: an x2 with maxReplica 2 holds 4 vCPUs
    _create(api, "hw-ep", max_replica=2)
    spr_x2 = next(hw for hw in api.list_inference_endpoints_hardware(namespace="alice")
                  if (hw.vendor, hw.region, hw.instance_type, hw.instance_size) == ("aws", "us-east-1", "intel-spr", "x2"))
    assert (spr_x2.max_accelerators, spr_x2.used_accelerators) == (32, 4)


# --------------------------------------------------------------------------------------------- catalog
GGUF = "Qwen/Qwen2.5-1.5B-Instruct-GGUF"
# (repo_id, recipe id, accelerator, engine, GGUF file) of the seeded catalog, in list order
CATALOG = [
    ("BAAI/bge-small-en-v1.5", "mellow-pho-t9c3k5wb", "cpu", "tei", None),
    ("BAAI/bge-small-en-v1.5", "toasty-falafel-h4q7y2ps", "gpu", "tei", None),
    ("meta-llama/Llama-3.1-8B-Instruct", "smoky-paella-k3v9t2qd", "gpu", "vllm", None),
    ("meta-llama/Llama-3.1-8B-Instruct", "golden-risotto-p7w2m4xa", "gpu", "vllm", None),
    (GGUF, "crispy-dumpling-f5z8q3lo", "cpu", "llamacpp", "qwen2.5-1.5b-instruct-q4_k_m.gguf"),
    (GGUF, "savory-pierogi-w1j4x7nk", "cpu", "llamacpp", "qwen2.5-1.5b-instruct-q8_0.gguf"),
    (GGUF, "spicy-curry-m6d2r8va", "gpu", "llamacpp", "qwen2.5-1.5b-instruct-q8_0.gguf"),
    ("Qwen/Qwen2.5-7B-Instruct", "zesty-laksa-r8n5c1ej", "gpu", "vllm", None),
    ("Qwen/Qwen2.5-7B-Instruct", "tangy-tagine-b2h6s9yu", "gpu", "vllm", None),
]


def test_library_catalog(hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_EXPERIMENTAL_WARNING", True)  # the catalog calls are marked so
    api = HfApi(token=hub["token"])

    # the whole catalog, parsed into the client's dataclasses
    catalog = api.list_inference_catalog()
    assert all(isinstance(m, InferenceCatalogModel) for m in catalog)
    assert all(isinstance(r, InferenceCatalogRecipe) for m in catalog for r in m.recipes)
    assert [(m.repo_id, r.id, r.accelerator, r.engine, r.gguf_file) for m in catalog for r in m.recipes] == CATALOG
    qwen = next(m for m in catalog if m.repo_id == "Qwen/Qwen2.5-7B-Instruct")
    assert (qwen.author, qwen.name, qwen.license, qwen.task) == ("Qwen", "Qwen2.5-7B-Instruct", "Apache 2.0",
                                                                 "text-generation")
    assert qwen.created_at.tzinfo is not None and qwen.recipes[0].revision is None
    # every filter the client sends, and the module-level function (implicit HF_TOKEN)
    filtered = api.list_inference_catalog(accelerator="cpu", engine="llamacpp", license="apache 2.0",
                                          task="text-generation", search="gguf", limit=5)
    assert [(m.repo_id, [r.id for r in m.recipes]) for m in filtered] == [
        (GGUF, ["crispy-dumpling-f5z8q3lo", "savory-pierogi-w1j4x7nk"])]
    assert [m.repo_id for m in huggingface_hub.list_inference_catalog(limit=1)] == ["BAAI/bge-small-en-v1.5"]

    # deploy a model, narrowed to a GGUF file, into the org
    ep = api.create_inference_endpoint_from_catalog(GGUF, gguf_file="qwen2.5-1.5b-instruct-q8_0.gguf", accelerator="cpu",
                                                    name="lib-gguf", namespace="acme")
    assert isinstance(ep, InferenceEndpoint)
    assert (ep.name, ep.namespace, ep.repository, ep.status, ep.task) == ("lib-gguf", "acme", GGUF, "pending",
                                                                          "text-generation")
    assert ep.raw["model"]["image"]["llamacpp"]["model"] == "/repository/qwen2.5-1.5b-instruct-q8_0.gguf"
    assert api.get_inference_endpoint("lib-gguf", namespace="acme").raw["compute"]["id"] == "aws-us-east-1-intel-spr-x4"

    # deploy a recipe: the namespace comes from whoami, the name is made from the model's
    embed = api.create_inference_endpoint_from_catalog(recipe_id="mellow-pho-t9c3k5wb")
    assert embed.namespace == "alice" and embed.name.startswith("bge-small-en-v1-5-"), embed.name
    got = api.get_inference_endpoint(embed.name)
    assert (got.repository, got.raw["compute"]["id"]) == ("BAAI/bge-small-en-v1.5", "aws-us-east-1-intel-spr-x2")
    assert got.raw["model"]["image"] == {"tei": {"url": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8"}}

    # refusals surface the server's message: an unknown model (404), no recipe for the accelerator (400)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_inference_endpoint_from_catalog("nobody/nothing")
    assert exc.value.response.status_code == 404, exc.value.response.text
    assert exc.value.server_message == "No model 'nobody/nothing' in the catalog"
    with pytest.raises(BadRequestError) as exc:
        api.create_inference_endpoint_from_catalog(GGUF, accelerator="neuron")
    assert "has no recipe with accelerator 'neuron'" in exc.value.server_message
    assert exc.value.response.json()["fields"].keys() == {"accelerator"}
    assert sorted(Endpoint.objects.values_list("account__slug", "name")) == [("acme", "lib-gguf"),
                                                                             ("alice", embed.name)]


# --------------------------------------------------------------------------------------------- errors


def test_library_errors(hub):
    api = HfApi(token=hub["token"])

    # a bad token: 401 with the server's {"error": ...} message surfaced by the client
    with pytest.raises(HfHubHTTPError) as exc:
        _create(HfApi(token="hf_not_a_real_token"), "bad-token", namespace="alice")
    assert exc.value.response.status_code == 401, exc.value.response.text
    assert exc.value.server_message and "token" in exc.value.server_message.lower()
    assert exc.value.server_message in str(exc.value)

    # the same without a namespace: the implicit whoami fails first and the client rewrites its message
    with pytest.raises(HfHubHTTPError) as exc:
        _create(HfApi(token="hf_not_a_real_token"), "bad-token")
    assert exc.value.response.status_code == 401, exc.value.response.text
    assert "Invalid user token" in str(exc.value)

    # duplicate name: 409
    _create(api, "dup-ep")
    with pytest.raises(HfHubHTTPError) as exc:
        _create(api, "dup-ep")
    assert exc.value.response.status_code == 409, exc.value.response.text
    assert "already exists" in (exc.value.server_message or "")
    assert exc.value.server_message in str(exc.value)

    # unknown instance type: 400 BadRequestError naming the field
    with pytest.raises(BadRequestError) as exc:
        _create(api, "bad-hw", instance_type="intel-nope")
    assert exc.value.response.status_code == 400, exc.value.response.text
    assert "instanceType" in exc.value.server_message and "intel-nope" in exc.value.server_message
    assert "Bad request:" in str(exc.value)
    assert exc.value.response.json()["fields"].get("compute.instanceType")

    # nothing was created by the failed calls
    assert [e.name for e in api.list_inference_endpoints()] == ["dup-ep"]


# --------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(hub, tmp_path):
    """Run ``.venv/bin/hf endpoints ...`` pointed at the live server through scripts/hfclient/sitecustomize.py."""
    guard_log = tmp_path / "guard.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({
        "PYTHONPATH": str(HFCLIENT_DIR),
        "HF_INFERENCE_ENDPOINTS_ENDPOINT": f"{hub['base']}/v2",
        "HF_INFERENCE_CATALOG_ENDPOINT": f"{hub['base']}/api/v1/catalog",
        "HF_ENDPOINT": hub["base"],
        "HF_TOKEN": hub["token"],
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HFCLIENT_ALLOWED_HOSTS": origin(hub["base"]),
        "HFCLIENT_GUARD_LOG": str(guard_log),
        "NO_COLOR": "1",
        "COLUMNS": "250",
    })

    def run(*args: str, expect: int = 0, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(HF_BIN), "endpoints", *args], capture_output=True, text=True,
                              env={k: v for k, v in env.items() if k not in unset},
                              timeout=60, stdin=subprocess.DEVNULL)
        if os.environ.get("HFCLIENT_DEBUG"):
            print(f"$ hf endpoints {' '.join(args)}  -> rc={proc.returncode}\n{proc.stdout}\n[stderr]\n{proc.stderr}")
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    run.guard_log = guard_log
    yield run
    assert not guard_log.exists(), guard_log.read_text()


def _json(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)


def test_cli(cli, hub):
    alice = hub["alice"]
    api = HfApi(token=hub["token"])

    # hardware with the default 32-vCPU cpu quota: an x16 intel-spr fits
    rows = _json(cli("hardware", "--vendor", "aws", "--region", "us-east-1", "--instance-type", "intel-spr",
                     "--format", "json"))
    sizes = {r["instance_size"] for r in rows}
    assert {"x1", "x2", "x4", "x8", "x16"} <= sizes
    assert all(r["quota"] == "0/32" for r in rows)
    human = cli("hardware", "--vendor", "aws", "--accelerator", "cpu", "--format", "human").stdout
    assert "intel-spr" in human and "x16" in human

    # lower alice's cpu quota to 4: x8 (8 vCPUs) no longer fits, x4 still does; --all shows x8 again
    quota_set(account=alice.personal_account, accelerator="cpu", limit=4)
    rows = _json(cli("hardware", "--vendor", "aws", "--region", "us-east-1", "--instance-type", "intel-spr",
                     "--format", "json"))
    sizes = {r["instance_size"] for r in rows}
    assert "x4" in sizes and "x8" not in sizes and "x16" not in sizes
    assert all(r["quota"] == "0/4" for r in rows)
    rows = _json(cli("hardware", "--vendor", "aws", "--region", "us-east-1", "--instance-type", "intel-spr", "--all",
                     "--format", "json"))
    assert {"x8", "x16"} <= {r["instance_size"] for r in rows}
    # the org keeps its own (default) quota
    rows = _json(cli("hardware", "--namespace", "acme", "--vendor", "aws", "--region", "us-east-1",
                     "--instance-type", "intel-spr", "--format", "json"))
    assert "x16" in {r["instance_size"] for r in rows}

    # deploy with the CLI
    deployed = _json(cli("deploy", "cli-ep", "--repo", "gpt2", "--framework", "pytorch", "--accelerator", "cpu",
                         "--instance-size", "x2", "--instance-type", "intel-spr", "--region", "us-east-1",
                         "--vendor", "aws", "--format", "json"))
    assert deployed["name"] == "cli-ep"
    assert deployed["status"]["state"] == "pending"
    assert deployed["model"]["repository"] == "gpt2"
    assert deployed["type"] == "authenticated"
    _create(api, "cli-org-ep", namespace="acme")

    # ls (own namespace) and ls --namespace '*'
    listed = _json(cli("ls", "--format", "json"))
    assert [(r["name"], r["status"], r["model"], r["instance"], r["vendor"], r["region"]) for r in listed] == [
        ("cli-ep", "pending", "gpt2", "intel-spr", "aws", "us-east-1")]
    human = cli("ls", "--format", "human").stdout
    assert "cli-ep" in human and "pending" in human
    assert {r["name"] for r in _json(cli("ls", "--namespace", "*", "--format", "json"))} == {"cli-ep", "cli-org-ep"}

    # describe
    described = _json(cli("describe", "cli-ep", "--format", "json"))
    assert described["name"] == "cli-ep" and described["status"]["state"] == "pending"
    assert described["compute"]["instanceType"] == "intel-spr"
    assert described["healthRoute"] == "/health"  # the managed image's

    # with 2 of 4 vCPUs held, x4 no longer fits, x2 still does
    rows = _json(cli("hardware", "--vendor", "aws", "--region", "us-east-1", "--instance-type", "intel-spr",
                     "--format", "json"))
    assert {r["instance_size"] for r in rows} == {"x1", "x2"}
    assert all(r["quota"] == "2/4" for r in rows)

    # update (scaling) through the CLI
    upd = _json(cli("update", "cli-ep", "--max-replica", "2", "--format", "json"))
    assert upd["compute"]["scaling"]["maxReplica"] == 2 and upd["compute"]["scaling"]["minReplica"] == 1

    # pause / resume / resume --fail-if-already-running
    paused = _json(cli("pause", "cli-ep", "--format", "json"))
    assert paused["status"]["state"] == "paused" and paused["status"].get("url") is None
    assert api.get_inference_endpoint("cli-ep").status == "paused"
    rows = _json(cli("hardware", "--vendor", "aws", "--region", "us-east-1", "--instance-type", "intel-spr",
                     "--format", "json"))
    assert "x4" in {r["instance_size"] for r in rows}  # paused holds no quota
    resumed = _json(cli("resume", "cli-ep", "--format", "json"))
    assert resumed["status"]["state"] == "pending"
    assert _json(cli("resume", "cli-ep", "--format", "json"))["status"]["state"] == "pending"
    failed = cli("resume", "cli-ep", "--fail-if-already-running", expect=144)  # 400
    assert "already running" in failed.stderr

    # scale-to-zero
    zeroed = _json(cli("scale-to-zero", "cli-ep", "--format", "json"))
    assert zeroed["status"]["state"] == "scaledToZero"

    # delete, then describe -> 404 -> exit 148
    deleted = cli("delete", "cli-ep", "--yes")
    assert "Deleted 'cli-ep'" in deleted.stdout
    missing = cli("describe", "cli-ep", expect=148)
    assert "404" in missing.stderr and "Endpoint not found" in missing.stderr
    assert [r["name"] for r in _json(cli("ls", "--format", "json"))] == []

    # errors through the CLI: a bad token (401 -> 145), a duplicate (deploy has no handler -> 1)
    bad = cli("ls", "--namespace", "alice", "--token", "hf_not_a_real_token", expect=145)
    assert "401" in bad.stderr and "token" in bad.stderr.split("401", 1)[1].lower()
    dup = cli("deploy", "cli-org-ep", "--namespace", "acme", "--repo", "gpt2", "--framework", "pytorch",
        "--accelerator", "cpu", "--instance-size", "x2", "--instance-type", "intel-spr", "--region", "us-east-1",
        "--vendor", "aws", expect=1)
    assert "409" in dup.stderr and "already exists" in dup.stderr
    assert api.get_inference_endpoint("cli-org-ep", namespace="acme").status == "pending"  # untouched


def test_cli_catalog(cli, hub):
    alice = hub["alice"]
    api = HfApi(token=hub["token"])

    # ls: one row per recipe, every filter through the CLI's own options
    rows = _json(cli("catalog", "ls", "--format", "json"))
    assert [(r["repo_id"], r["recipe_id"], r["accelerator"], r["engine"], r["gguf_file"]) for r in rows] == CATALOG
    assert {(r["task"], r["license"]) for r in rows if r["repo_id"] == "BAAI/bge-small-en-v1.5"} == {
        ("sentence-embeddings", "MIT")}
    rows = _json(cli("catalog", "ls", "--accelerator", "cpu", "--engine", "llamacpp", "--task", "text-generation",
                     "--license", "Apache 2.0", "--search", "qwen", "--limit", "3", "--format", "json"))
    assert [r["recipe_id"] for r in rows] == ["crispy-dumpling-f5z8q3lo", "savory-pierogi-w1j4x7nk"]
    human = cli("catalog", "ls", "--engine", "tei", "--format", "human")
    assert "mellow-pho-t9c3k5wb" in human.stdout and "toasty-falafel-h4q7y2ps" in human.stdout
    assert "zesty-laksa-r8n5c1ej" not in human.stdout
    assert "hf endpoints catalog deploy --recipe mellow-pho-t9c3k5wb" in human.stdout + human.stderr

    # deploy a recipe with a name, then a model narrowed by GGUF file into the org
    deployed = _json(cli("catalog", "deploy", "--recipe", "mellow-pho-t9c3k5wb", "--name", "cli-embed",
                         "--format", "json"))
    assert (deployed["name"], deployed["status"]["state"]) == ("cli-embed", "pending")
    assert deployed["model"]["repository"] == "BAAI/bge-small-en-v1.5"
    got = api.get_inference_endpoint("cli-embed")
    assert (got.repository, got.task, got.raw["compute"]["id"]) == ("BAAI/bge-small-en-v1.5", "sentence-embeddings",
                                                                    "aws-us-east-1-intel-spr-x2")
    deployed = _json(cli("catalog", "deploy", "--repo", GGUF, "--gguf-file", "qwen2.5-1.5b-instruct-q8_0.gguf",
                         "--namespace", "acme", "--format", "json"))
    endpoint = Endpoint.objects.get(account__slug="acme")
    assert deployed["name"] == endpoint.name and endpoint.repository == GGUF
    assert endpoint.instance.compute_id == "aws-us-east-1-intel-spr-x4"
    assert endpoint.image["llamacpp"]["model"] == "/repository/qwen2.5-1.5b-instruct-q8_0.gguf"
    assert endpoint.created_by == alice
    assert {e.name for e in api.list_inference_endpoints(namespace="*")} == {"cli-embed", endpoint.name}

    # refusals: an unknown model (404 -> exit 148), over quota (403 -> 147), nothing written by either
    missing = cli("catalog", "deploy", "--repo", "nobody/nothing", expect=148)
    assert "404" in missing.stderr and "No model 'nobody/nothing' in the catalog" in missing.stderr
    quota_set(account=alice.personal_account, accelerator="cpu", limit=3)
    refused = cli("catalog", "deploy", "--recipe", "savory-pierogi-w1j4x7nk", expect=147)
    assert "403" in refused.stderr and "Quota exceeded for cpu in 'alice'" in refused.stderr
    assert [e.name for e in api.list_inference_endpoints()] == ["cli-embed"]


def test_cli_guard(cli):
    """The subprocess guard works: without HF_ENDPOINT, whoami would go to huggingface.co and is refused."""
    refused = cli("ls", expect=1, unset=("HF_ENDPOINT",))
    assert "hfclient guard" in refused.stderr
    # the CLI also fetches {HF_ENDPOINT}/api/agent-harnesses (agent detection); both were stopped
    assert "GET https://huggingface.co/api/whoami-v2" in cli.guard_log.read_text().splitlines()
    assert {line.split("/")[2] for line in cli.guard_log.read_text().splitlines()} == {"huggingface.co"}
    cli.guard_log.unlink()
