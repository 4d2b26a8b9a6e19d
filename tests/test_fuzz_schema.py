"""Schemathesis against the live server's own OpenAPI schema: every operation, over real HTTP.

The schema under test is the one a live test server serves at ``/api/schema/``. For each operation the
test sends schemathesis' coverage cases (boundary and negative values derived from the schema), then
``EXAMPLES_PER_OPERATION`` Hypothesis examples of valid data and as many of invalid data.

Requests carry a write token of ``fuzzer`` (a few carry a read token or none). Generated path
parameters are remapped by a ``map_case`` hook, deterministically from the generated value so
Hypothesis can replay and shrink: mostly to the fuzzer's own namespace and endpoints, so requests reach
the services rather than stop at a 404, and otherwise to an org where the fuzzer is admin, one where it
only reads, another user's namespace, or the generated value itself. Create and update bodies are
sometimes pointed at a real catalog instance so they pass admission and exercise quotas, the endpoint
limit and rendering; inference-catalog deploys at seeded models and recipes, with the body's namespace
aimed like a path's.

Each response must not be a 5xx and must match the status codes, content types and response schemas
the schema documents for that operation.

(schemathesis 4.32.5's ``schemathesis.pytest.from_fixture`` cannot run under pytest 9.2: it writes
``request.node._nodeid``, which pytest 9 removed. Operations are therefore parametrized here from the
in-process schema and the live schema is checked to list exactly the same operations.)
"""

import hashlib
import re
import time

import hypothesis
import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import GenerationConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane.errors import DomainError
from controlplane.fields import ENV_NAME_RE
from controlplane.names import ENDPOINT_NAME_PATTERN as NAME_RE
from endpoints.models import Endpoint
from endpoints.services import endpoint_create, endpoint_pause
from quotas.services import quota_set
from tests.factories import endpoint_spec, make_org, make_token, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLES_PER_OPERATION = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
KNOWN_OPEN: dict[str, tuple] = {}  # operation -> checks relaxed for it (none now)
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in SchemaGenerator().get_schema(request=None, public=True)["paths"].items()
    for method in item if method in HTTP_METHODS
)
# (vendor, region, accelerator, type, size) of catalog rows; the last one is deprecated (400).
INSTANCES = [
    ("aws", "us-east-1", "cpu", "intel-spr", "x1"),
    ("aws", "us-east-1", "cpu", "intel-spr", "x4"),
    ("aws", "us-east-1", "gpu", "nvidia-l4", "x1"),
    ("aws", "us-east-1", "neuron", "inf2", "x1"),
    ("aws", "us-east-1", "cpu", "intel-spr", "x2"),
    ("aws", "us-east-1", "gpu", "nvidia-a100", "x2"),
    ("aws", "us-east-1", "cpu", "intel-icl", "x1"),
]
OWN_ENDPOINTS = ("ep-one", "ep-two", "ep-paused")
FUZZ_WEBHOOK_URL = "https://93.184.215.14/fuzz-hook"
# Seeded catalog models and recipes (endpoints/catalog_seed.py), so catalog deploys reach admission.
CATALOG_MODELS = ("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "BAAI/bge-small-en-v1.5", "meta-llama/Llama-3.1-8B-Instruct")
CATALOG_RECIPES = ("mellow-pho-t9c3k5wb", "crispy-dumpling-f5z8q3lo", "spicy-curry-m6d2r8va")
CATALOG_DEPLOYS = ("catalog_model_deploy", "catalog_recipe_deploy")
# Negative-mode cases carry arbitrary extra headers, which the API must ignore. Those that steer HTTP
# itself are dropped: an Accept of text/html gets the browsable API, a stray Content-Type a 415, an
# invalid Host a 400 (tests/test_limits.py pins that one; it was found here, as Django's HTML page).
# Content-type probes are still sent by the coverage phase.
PROTOCOL_HEADERS = {"authorization", "host", "accept", "accept-encoding", "content-type", "content-length",
                    "transfer-encoding", "connection", "expect", "te", "upgrade", "cookie"}
STATS: dict = {"requests": 0, "by_operation": {}, "by_status": {}, "seconds": 0.0}


def _bucket(value, buckets: int) -> int:
    """A stable bucket for a generated value: the same case always maps the same way."""
    return int(hashlib.sha256(repr(value).encode()).hexdigest(), 16) % buckets


class World:
    """Who and what exists on the server while fuzzing, and how generated cases are aimed at it."""

    def __init__(self):
        from controlplane.models import ApiToken

        self.fuzzer = make_user("fuzzer")
        victim = make_user("victim")
        self.account = self.fuzzer.personal_account
        self.token = make_token(self.fuzzer)
        self.read_token = make_token(self.fuzzer, role="read")
        protected = set(ApiToken.objects.filter(user=self.fuzzer).values_list("pk", flat=True))
        for _ in range(3):
            make_token(self.fuzzer)
        self.protected_token_ids = protected
        self.revocable_token_ids = sorted(
            set(ApiToken.objects.filter(user=self.fuzzer).values_list("pk", flat=True)) - protected)
        self.victim_token_id = ApiToken.objects.filter(user=victim).values_list("pk", flat=True).first()
        org_admin = make_org("fuzz-admin", members={self.fuzzer: "admin"})
        make_org("fuzz-read", members={self.fuzzer: "read"})
        # Room for many admissions in the fuzzer's namespace; a small quota in the org, to meet 403s too.
        for accelerator, limit in (("cpu", 100_000), ("gpu", 10_000), ("neuron", 10_000)):
            quota_set(account=self.account, accelerator=accelerator, limit=limit)
        self.ensure_endpoints()
        endpoint_create(account=org_admin, spec=endpoint_spec("ep-one"), actor=self.fuzzer)
        endpoint_create(account=victim.personal_account, spec=endpoint_spec("ep-one"), actor=victim)
        self.ensure_webhooks()
        # Weighted: the fuzzer's own namespace most of the time.
        self.namespaces = ["fuzzer"] * 6 + ["fuzz-admin", "fuzz-read", "victim"]

    def ensure_endpoints(self) -> None:
        """Keep creates admissible (prune fuzzed endpoints before the per-account limit, whose 409 is in
        test_limits.py) and put back the fixed endpoints a fuzzed delete removed."""
        fuzzed = Endpoint.objects.filter(account=self.account).exclude(name__in=OWN_ENDPOINTS)
        if fuzzed.count() > 80:
            fuzzed.delete()
        existing = set(Endpoint.objects.filter(account=self.account, name__in=OWN_ENDPOINTS)
                       .values_list("name", flat=True))
        for name in set(OWN_ENDPOINTS) - existing:
            try:
                endpoint_create(account=self.account, spec=endpoint_spec(name), actor=self.fuzzer)
                if name == "ep-paused":
                    endpoint_pause(account=self.account, name=name, actor=self.fuzzer)
            except DomainError:  # quota or the endpoint limit used up by fuzzed creates: fine
                pass

    def ensure_webhooks(self) -> None:
        """Keep one subscription of the fuzzer's with a delivery to aim webhook ids at (a fuzzed delete removes
        it), and room under the subscription limit for fuzzed creates to succeed. Public literal URLs: no DNS
        lookup, and nothing is sent (no worker runs here)."""
        from controlplane.models import WebhookDelivery, WebhookSubscription
        from controlplane.webhooks.events import emit
        from controlplane.webhooks.services import webhook_create

        own = WebhookSubscription.objects.filter(account=self.account)
        if own.count() > 10:
            own.exclude(pk=getattr(self, "webhook_id", None)).delete()
        if not own.filter(pk=getattr(self, "webhook_id", None)).exists():
            self.webhook_id = webhook_create(account=self.account, url=FUZZ_WEBHOOK_URL, actor=self.fuzzer)[0].pk
        if not WebhookDelivery.objects.filter(subscription_id=self.webhook_id).exists():
            emit(account=self.account, event_type="endpoint.created", data={"fuzz": True})
        self.delivery_id = WebhookDelivery.objects.filter(subscription_id=self.webhook_id).values_list(
            "pk", flat=True).first()

    def aim(self, case):
        """Remap a generated case onto real objects (deterministic in the generated values)."""
        params = dict(case.path_parameters or {})
        # Hash the whole case: Hypothesis repeats small path values ("0") that alone would pin one bucket.
        seed = (params, case.query, case.body)
        if "namespace" in params:
            bucket = _bucket(("ns", seed), len(self.namespaces) + 1)
            if bucket < len(self.namespaces):
                params["namespace"] = self.namespaces[bucket]
        if "name" in params:
            bucket = _bucket(("name", seed), len(OWN_ENDPOINTS) + 1)
            if bucket < len(OWN_ENDPOINTS):
                params["name"] = OWN_ENDPOINTS[bucket]
        for key, known in (("repo_id", CATALOG_MODELS), ("recipe_id", CATALOG_RECIPES)):
            if key in params:
                bucket = _bucket((key, seed), len(known) + 1)
                if bucket < len(known):
                    params[key] = known[bucket]
        if "token_id" in params:
            candidates = [*self.revocable_token_ids, self.victim_token_id]
            bucket = _bucket(("token", params["token_id"]), len(candidates) + 2)
            if bucket < len(candidates):
                params["token_id"] = candidates[bucket]
            elif params["token_id"] in self.protected_token_ids:  # never revoke the fuzzer's own credentials
                params["token_id"] = self.revocable_token_ids[0]
        if "webhook_id" in params and _bucket(("webhook", seed), 4) < 3:
            params["webhook_id"] = self.webhook_id
        if "delivery_id" in params and _bucket(("delivery", seed), 4) < 3:
            params["delivery_id"] = self.delivery_id
        case.path_parameters = params
        case.body = self._aim_body(case.operation.definition.raw.get("operationId"), case.body)
        auth = _bucket(("auth", case.path_parameters, case.query, case.body), 20)
        secret = self.token if auth < 18 else self.read_token if auth == 18 else None
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in PROTOCOL_HEADERS}
        case.headers = {**headers, "Authorization": f"Bearer {secret}"} if secret else headers
        return case

    def _aim_body(self, operation_id: str, body):
        if operation_id in ("webhook_create", "webhook_update") and isinstance(body, dict):
            if "url" in body and _bucket(("url", body), 2) == 0:  # else generated URLs: mostly refused
                body = {**body, "url": FUZZ_WEBHOOK_URL}
            return body
        if operation_id in CATALOG_DEPLOYS and isinstance(body, dict):
            return self._aim_catalog_body(body)
        if operation_id not in ("endpoint_create", "endpoint_update") or not isinstance(body, dict):
            return body
        bucket = _bucket(("body", body), len(INSTANCES) + 2)
        if bucket >= len(INSTANCES):
            return body
        vendor, region, accelerator, instance_type, size = INSTANCES[bucket]
        body = dict(body)
        name = body.get("name")
        if isinstance(name, str) and re.match(NAME_RE, name):  # unique, so it is not just "name_taken"
            body["name"] = f"{name[:23].rstrip('-')}-{hashlib.sha256(repr(body).encode()).hexdigest()[:8]}"
        if operation_id == "endpoint_create" or isinstance(body.get("provider"), dict):
            provider = body.get("provider") if isinstance(body.get("provider"), dict) else {}
            body["provider"] = {**provider, "vendor": vendor, "region": region}
        if isinstance(body.get("compute"), dict):
            body["compute"] = {**body["compute"], "accelerator": accelerator, "instanceType": instance_type,
                               "instanceSize": size}
            scaling = body["compute"].get("scaling")
            if isinstance(scaling, dict) and all(type(scaling.get(k)) is int for k in ("minReplica", "maxReplica")):
                low, high = sorted((scaling["minReplica"], scaling["maxReplica"]))
                body["compute"]["scaling"] = {**scaling, "minReplica": low, "maxReplica": max(high, 1)}
        model = body.get("model")
        if isinstance(model, dict):  # keep only names Kubernetes accepts (the schema cannot say so in OAS 3.0)
            body["model"] = {**model, **{key: {k: v for k, v in model[key].items() if ENV_NAME_RE.match(k)}
                                         for key in ("env", "secrets") if isinstance(model.get(key), dict)}}
        return body


    def _aim_catalog_body(self, body: dict) -> dict:
        """A catalog deploy's namespace is in its body: aim it as path namespaces are, and make a valid
        ``config.name`` unique so the deploy is not just ``name_taken``."""
        body = dict(body)
        bucket = _bucket(("catalog-ns", body), len(self.namespaces) + 1)
        if bucket < len(self.namespaces):
            body["namespace"] = self.namespaces[bucket]
        config = body.get("config")
        if isinstance(config, dict) and isinstance(config.get("name"), str) and re.match(NAME_RE, config["name"]):
            suffix = hashlib.sha256(repr(body).encode()).hexdigest()[:8]
            body["config"] = {**config, "name": f"{config['name'][:23].rstrip('-')}-{suffix}"}
        return body


@pytest.fixture
def world(live_server, settings, broker):
    # A limit no fuzzing run reaches: the throttle runs on every request, its 429 is in test_limits.py.
    settings.API_RATE_LIMIT = "1000000/min"
    # Event streams (GET .../events?follow=true) send what is recorded and end at once instead of holding the
    # connection for their usual duration; tests/test_event_stream.py follows them for real.
    settings.EVENT_STREAM_MAX_SECONDS = 0
    return World()


@pytest.fixture
def live_schema(world, live_server):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    live = sorted(op.ok().label for op in schema.get_all_operations())
    assert live == OPERATIONS, "the live schema and the in-process one list different operations"

    @schema.hook("map_case")
    def aim_at_real_objects(context, case):
        return world.aim(case)

    return schema


def _send(case, world) -> None:
    if "/v2/endpoint/" in case.operation.label or "/deploy" in case.operation.label:
        world.ensure_endpoints()
    if "/v2/webhooks/" in case.operation.label:
        world.ensure_webhooks()
    started = time.monotonic()
    response = case.call(timeout=30)
    STATS["seconds"] += time.monotonic() - started
    STATS["requests"] += 1
    label = case.operation.label
    STATS["by_operation"][label] = STATS["by_operation"].get(label, 0) + 1
    STATS["by_status"][response.status_code] = STATS["by_status"].get(response.status_code, 0) + 1
    if label in KNOWN_OPEN and response.status_code == 200 and case.method.upper() == "GET":
        assert response.headers["content-type"][0].startswith("text/plain"), response.headers
    case.validate_response(response, checks=[c for c in CHECKS if c not in KNOWN_OPEN.get(label, ())])


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_conforms_to_the_schema(label, live_schema, world):
    method, path = label.split(" ", 1)
    operation = live_schema[path][method]

    coverage = live_schema.iter_coverage_cases(operation, generation_modes=list(GenerationMode),
                                               generation_config=GenerationConfig())
    for case in coverage:
        _send(world.aim(case), world)

    for mode in GenerationMode:
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck),
                             phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink])
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            _send(case, world)

        fuzz()


@pytest.fixture(scope="module", autouse=True)
def _report_request_count(request):
    yield
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\nschemathesis: {STATS['requests']} requests over {len(STATS['by_operation'])} operations "
              f"({STATS['seconds']:.0f} s waiting on the server)")
        for label, count in sorted(STATS["by_operation"].items()):
            print(f"  {count:5d}  {label}")
        print("  by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(STATS["by_status"].items())))
