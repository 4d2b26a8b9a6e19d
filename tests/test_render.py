"""Golden tests of the pure renderer: each case's manifests are pinned in tests/golden/render/<case>.json.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 make test PYTEST_ARGS=tests/test_render.py``
and review the diff. Every rendered object must also pass strict Kubernetes schema validation.
"""

import json
import os
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest

from deployments.render import EndpointTarget, InstanceSpec, Platform, render_account, render_endpoint

GOLDEN = Path(__file__).parent / "golden" / "render"
PLATFORM = Platform(managed_image="registry.example/inference-toolkit:1", fetcher_image="registry.example/cp:1",
                    hub_url="https://huggingface.co", gateway_namespace="controlplane",
                    private_cidrs=("10.0.0.0/16",))
CPU = InstanceSpec(accelerator="cpu", accelerator_count=0, accelerator_resource="", cpu_request="1800m",
                   memory_request="3686Mi", memory_limit="4096Mi",
                   node_selector={"inference.controlplane.dev/instance-type": "intel-spr"})
GPU = InstanceSpec(accelerator="gpu", accelerator_count=1, accelerator_resource="nvidia.com/gpu",
                   cpu_request="6300m", memory_request="27648Mi", memory_limit="30720Mi",
                   node_selector={"inference.controlplane.dev/instance-type": "nvidia-l4"},
                   tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
NEURON = InstanceSpec(accelerator="neuron", accelerator_count=1, accelerator_resource="aws.amazon.com/neuron",
                      cpu_request="3600m", memory_request="13363Mi", memory_limit="14848Mi")


def target(**overrides) -> EndpointTarget:
    base = {"id": 42, "name": "my-endpoint", "account_label": "acme", "namespace": "ie-acme", "intent": "run",
            "repository": "openai-community/gpt2", "revision": "e7da7f221d5bf496a48136c0cd264e630fe9fcc8",
            "framework": "pytorch", "task": "text-generation", "image": {"huggingface": {}}, "instance": CPU,
            "min_replica": 1, "max_replica": 3, "hub_token": True}
    return EndpointTarget(**{**base, **overrides})


CASES = {
    "cpu-managed-hardware-usage": target(),
    "cpu-managed-pending-requests": target(scaling_metric="pendingRequests", scaling_threshold=2.5),
    "cpu-with-secrets-env-command": target(secrets={"API_KEY": "value"}, secrets_version="3f1c0de2a9b84e11",
                                           env={"LOG": "debug"},
                                           command=["python", "serve.py"], args=["--port", "80"]),
    "gpu-managed-hardware-usage": target(instance=GPU, scaling_threshold=70),
    "gpu-tgi": target(instance=GPU, image={"tgi": {"url": "ghcr.io/huggingface/text-generation-inference:3.3",
                                                   "maxInputLength": 1024, "quantize": "awq",
                                                   "disableCustomKernels": True}}),
    "gpu-vllm-parallel": target(instance=GPU, image={"vLLM": {"url": "vllm/vllm-openai:v0.11",
                                                             "tensorParallelSize": 1}}),
    "gpu-sglang": target(instance=GPU, image={"sGLang": {"url": "lmsysorg/sglang:v0.5"}}),
    "cpu-tei": target(task="feature-extraction",
                      image={"tei": {"url": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8"}}),
    "cpu-llamacpp": target(image={"llamacpp": {"url": "ghcr.io/ggml-org/llama.cpp:server", "ctxSize": 4096,
                                               "nParallel": 2}}),
    "cpu-hfserve": target(image={"hfServe": {"url": "ghcr.io/huggingface/hf-serve:1", "port": 8080}}),
    "cpu-custom-private-registry": target(
        image={"custom": {"url": "registry.acme.dev/team/server:2", "port": 8080, "healthRoute": "/ready",
                          "credentials": {"username": "bot"}}},
        registry={"server": "registry.acme.dev", "username": "bot", "password": "pw"}),
    "neuron-managed": target(instance=NEURON, image={"huggingfaceNeuron": {}}),
    "neuron-tgi": target(instance=NEURON, image={"tgiNeuron": {"url": "ghcr.io/huggingface/neuronx-tgi:0.3"}}),
    "paused": target(intent="pause"),
    "scaled-to-zero-min-zero": target(intent="scale_to_zero", min_replica=0),
    "public": target(access="public"),
    "private": target(access="private"),
    "private-privatelink": target(access="private", private_service={"accountId": "123456789012",
                                                                     "region": "us-east-1"}),
}


def _check(case: str, objects: list[dict]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    path = GOLDEN / f"{case}.json"
    text = json.dumps(objects, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file for {case}; run with UPDATE_GOLDEN=1 and review it"
    assert json.loads(path.read_text()) == objects


@pytest.mark.parametrize("case", list(CASES))
def test_render_endpoint_matches_golden(case):
    _check(case, render_endpoint(CASES[case], PLATFORM))


def test_render_account_matches_golden():
    _check("account", render_account(namespace="ie-acme", account_label="acme",
                                     quota={"cpu": 32, "gpu": 4, "neuron": 0}, hub_token="hf_account_token",
                                     egress_denied=("10.0.0.0/8", "169.254.0.0/16", "fd00::/8")))


def test_render_is_pure_and_deterministic():
    assert render_endpoint(CASES["gpu-tgi"], PLATFORM) == render_endpoint(CASES["gpu-tgi"], PLATFORM)
    rolled = render_endpoint(target(revision="f" * 40), PLATFORM)
    before = render_endpoint(target(), PLATFORM)
    assert rolled[0]["spec"]["template"]["metadata"]["annotations"] != \
        before[0]["spec"]["template"]["metadata"]["annotations"]


def test_secret_values_appear_only_in_secrets():
    import base64

    planted = {"secret": "planted-secret-value", "password": "planted-registry-password"}
    objects = render_endpoint(target(secrets={"API_KEY": planted["secret"]},
                                     image={"custom": {"url": "registry.acme.dev/x:1", "credentials": {"username": "u"}}},
                                     registry={"server": "registry.acme.dev", "username": "u",
                                               "password": planted["password"]}), PLATFORM)
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert len(secrets) == 2
    for obj in objects:
        text = json.dumps(obj)
        found = [v for v in planted.values() if v in text or base64.b64encode(v.encode()).decode() in text]
        assert not found if obj["kind"] != "Secret" else True, (obj["kind"], found)
    assert base64.b64encode(planted["secret"].encode()).decode() in json.dumps(secrets[0])


def test_only_the_gateway_reaches_public_and_protected_endpoints_and_never_private_ones():
    for access in ("public", "protected", "authenticated"):
        policies = [o for o in render_endpoint(target(access=access), PLATFORM) if o["kind"] == "NetworkPolicy"]
        assert [p["metadata"]["name"] for p in policies] == ["gateway-ep-my-endpoint"]
        source, = policies[0]["spec"]["ingress"][0]["from"]
        assert source == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "controlplane"}},
                          "podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}
    private = render_endpoint(target(access="private"), PLATFORM)
    assert "gateway" not in json.dumps(private)
    linked = render_endpoint(CASES["private-privatelink"], PLATFORM)
    nlb, = [o for o in linked if o["kind"] == "Service" and o["spec"]["type"] == "LoadBalancer"]
    assert nlb["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert len(nlb["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-name"]) <= 32


# The cluster's pod and Service ranges, two of them inside an allowed private range, one outside every one.
POD_RANGES = replace(PLATFORM, private_cidrs=("10.0.0.0/8", "192.168.10.0/24", "fd00::/8"),
                     pod_cidrs=("10.244.0.0/16", "10.96.0.0/12", "172.16.0.0/12", "fd00:10::/64"))


def test_item13_a_private_endpoints_cidr_rule_excepts_the_pod_ranges_inside_it():
    objects = render_endpoint(target(access="private"), POD_RANGES)
    _check("private-pod-ranges-excepted", objects)
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16", "10.96.0.0/12"]}},
        {"ipBlock": {"cidr": "192.168.10.0/24"}},  # no pod range inside it: nothing to except
        {"ipBlock": {"cidr": "fd00::/8", "except": ["fd00:10::/64"]}},
    ]
    # Only the private rule changes: public endpoints still admit the gateway's pods and nothing else.
    assert render_endpoint(target(access="public"), POD_RANGES) == render_endpoint(target(access="public"), PLATFORM)
