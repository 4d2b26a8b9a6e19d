"""The Helm chart: strict lint, rendering with every values file in ci/, every object checked against the
Kubernetes schemas, the pod security baseline, references between objects, and RBAC against
``deployments.kinds.KINDS``. Each check is also run on a chart broken on purpose, to prove it can fail.

Needs no database. The tools come from ``.tools/bin``; ``scripts/install_tools.sh`` puts them there
when they are missing (never skipped).
"""

import functools
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deployments.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "controlplane"
TOOLS_BIN = ROOT / ".tools" / "bin"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
CI_IDS = [path.stem for path in CI_VALUES]
NAMESPACE = "cp-system"
RELEASE = "cp"
# The newest Kubernetes schemas kubernetes-validate ships, also given to `helm template --kube-version`.
KUBE_VERSION = kubernetes_validate.latest_version()
WORKLOAD_KINDS = {"Deployment", "Job"}


@functools.cache
def tool(name: str) -> str:
    """The path of a tool in .tools/bin, running scripts/install_tools.sh first when any is missing."""
    wanted = ("helm", "kubectl", "docker-compose")
    if not all(os.access(TOOLS_BIN / each, os.X_OK) for each in wanted):
        result = subprocess.run(["bash", str(ROOT / "scripts" / "install_tools.sh")], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"scripts/install_tools.sh failed:\n{result.stdout}\n{result.stderr}"
    return str(TOOLS_BIN / name)


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def lint(helm: str, chart: Path, values: Path | None = None) -> subprocess.CompletedProcess:
    return run(helm, "lint", "--strict", str(chart), *(["--values", str(values)] if values else []))


def render(helm: str, chart: Path, values: Path | None = None) -> list[dict]:
    """`helm template` (hooks included) as a list of objects; raises with helm's message when it fails."""
    result = run(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
                 *(["--values", str(values)] if values else []))
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def rendered(values_name: str) -> tuple[dict, ...]:
    return tuple(render(tool("helm"), CHART, CHART / "ci" / f"{values_name}.yaml"))


def copy_chart(tmp_path: Path) -> Path:
    target = tmp_path / "controlplane"
    shutil.copytree(CHART, target)
    return target


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])] if spec else []


def pod_spec(obj: dict) -> dict | None:
    return obj["spec"]["template"]["spec"] if obj["kind"] in WORKLOAD_KINDS else None


def find(objects, kind: str, component: str | None = None) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind and (
        component is None or obj["metadata"]["labels"].get("app.kubernetes.io/component") == component)]


def one(objects, kind: str, component: str | None = None) -> dict:
    found = find(objects, kind, component)
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------- checks, each returning its findings

# The Gateway API's HTTPRoute is a CRD: kubernetes-validate has no schema for it. This is the part of
# gateway.networking.k8s.io/v1 HTTPRoute the chart can emit, closed to unknown fields like the rest.
_HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_HTTPROUTE_PARENT_REF = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {"group": {"type": "string"}, "kind": {"type": "string"}, "namespace": {"type": "string"},
                   "name": {"type": "string", "minLength": 1}, "sectionName": {"type": "string"},
                   "port": {"type": "integer", "minimum": 1, "maximum": 65535}},
}
HTTPROUTE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object"},  # checked as ObjectMeta by kubernetes-validate, below
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["parentRefs", "rules"],
            "properties": {
                "parentRefs": {"type": "array", "minItems": 1, "maxItems": 32, "items": _HTTPROUTE_PARENT_REF},
                "hostnames": {"type": "array", "maxItems": 16, "items": {"type": "string", "pattern": _HOSTNAME}},
                "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "matches": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "properties": {"path": {
                                "type": "object", "additionalProperties": False,
                                "properties": {"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                                               "value": {"type": "string"}}}}}},
                        "backendRefs": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False, "required": ["name", "port"],
                            "properties": {"group": {"type": "string"}, "kind": {"type": "string"},
                                           "name": {"type": "string", "minLength": 1},
                                           "namespace": {"type": "string"},
                                           "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                           "weight": {"type": "integer", "minimum": 0}}}},
                    }}},
            }},
    },
}


def schema_errors(objects) -> list[str]:
    """Every object against the Kubernetes schemas of KUBE_VERSION, unknown fields rejected."""
    errors = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            if obj.get("kind") == "HTTPRoute":
                jsonschema.validate(obj, HTTPROUTE_SCHEMA)
                meta_only = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
                kubernetes_validate.validate(meta_only, KUBE_VERSION, strict=True)
            else:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError,
                jsonschema.ValidationError) as exc:
            errors.append(f"{name}: {str(exc).splitlines()[0]}")
    return errors


def security_problems(objects) -> list[str]:
    """The baseline every pod must meet: non-root uid 10001, RuntimeDefault seccomp, read-only root with
    a writable /tmp, no privilege escalation, ALL capabilities dropped, resources requested."""
    problems = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod = spec.get("securityContext", {})
        if pod.get("runAsNonRoot") is not True or pod.get("runAsUser") != 10001:
            problems.append(f"{where}: pod must run as non-root uid 10001")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(obj):
            at = f"{where}/{container['name']}"
            sc = container.get("securityContext", {})
            if sc.get("runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot must be true")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation must be false")
            if sc.get("privileged"):
                problems.append(f"{at}: must not be privileged")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []) or sc.get("capabilities", {}).get("add"):
                problems.append(f"{at}: must drop ALL capabilities and add none")
            if not any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in container.get("volumeMounts", [])):
                problems.append(f"{at}: needs an emptyDir at /tmp")
            requests = container.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= set(requests):
                problems.append(f"{at}: resources.requests must set cpu and memory")
            if "memory" not in container.get("resources", {}).get("limits", {}):
                problems.append(f"{at}: resources.limits must set memory")
    return problems


def granted_rules(objects) -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples the chart's ClusterRoles grant; wildcards are kept as '*'."""
    granted = set()
    for role in find(objects, "ClusterRole"):
        for rule in role.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        granted.add((group, resource, verb))
    return granted


def rbac_difference(objects) -> tuple[set, set]:
    """(needed but not granted, granted but not needed) against deployments.kinds.KINDS."""
    needed = {(kind.group, kind.resource, verb) for kind in KINDS for verb in kind.verbs}
    granted = granted_rules(objects)
    return needed - granted, granted - needed


def rbac_problems(objects) -> list[str]:
    problems = []
    for role in find(objects, "ClusterRole"):
        for rule in role.get("rules", []):
            if "nonResourceURLs" in rule or "resourceNames" in rule:
                problems.append(f"{role['metadata']['name']}: unexpected rule {rule}")
    missing, extra = rbac_difference(objects)
    problems += [f"not granted: {triple}" for triple in sorted(missing)]
    problems += [f"granted beyond deployments.kinds.KINDS: {triple}" for triple in sorted(extra)]
    return problems


def reference_problems(objects, external_secrets: frozenset[str] = frozenset()) -> list[str]:
    """Names and selectors that must meet: Services, PDBs and the HPA select or target a rendered
    Deployment, Ingress and HTTPRoute backends name a rendered Service and its port, pods reference the
    rendered ConfigMap and Secrets (or ones the values say exist), the binding names the role and account."""
    problems = []
    deployments = {d["metadata"]["name"]: d for d in find(objects, "Deployment")}
    services = {s["metadata"]["name"]: s for s in find(objects, "Service")}

    def selects_a_deployment(selector: dict) -> bool:
        return any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values())

    for service in services.values():
        if not selects_a_deployment(service["spec"]["selector"]):
            problems.append(f"Service {service['metadata']['name']} selects no Deployment")
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            if not any(target in {p.get("name"), p.get("containerPort")}
                       for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]
                       for p in c.get("ports", []) if selects_a_deployment(service["spec"]["selector"])):
                problems.append(f"Service {service['metadata']['name']} targets a port no container has")
    for pdb in find(objects, "PodDisruptionBudget"):
        if not selects_a_deployment(pdb["spec"]["selector"]["matchLabels"]):
            problems.append(f"PodDisruptionBudget {pdb['metadata']['name']} selects no Deployment")
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.append(f"HPA {hpa['metadata']['name']} targets missing Deployment {target}")
        elif "replicas" in deployments[target]["spec"]:
            problems.append(f"Deployment {target} sets replicas although an HPA scales it")
    for ingress in find(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                if service is None or backend["port"].get("name") not in {p["name"] for p in service["spec"]["ports"]}:
                    problems.append(f"Ingress {ingress['metadata']['name']} points at missing {backend}")
    for route in find(objects, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for ref in rule.get("backendRefs", []):
                service = services.get(ref["name"])
                if service is None or ref["port"] not in {p["port"] for p in service["spec"]["ports"]}:
                    problems.append(f"HTTPRoute {route['metadata']['name']} points at missing {ref}")
    config_maps = {c["metadata"]["name"] for c in find(objects, "ConfigMap")}
    secrets = {s["metadata"]["name"] for s in find(objects, "Secret")}
    for obj in objects:
        for container in containers(obj):
            for source in container.get("envFrom", []):
                name = source.get("configMapRef", {}).get("name")
                if name and name not in config_maps:
                    problems.append(f"{obj['metadata']['name']}: envFrom names missing ConfigMap {name}")
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets | external_secrets:
                    problems.append(f"{obj['metadata']['name']}: {env['name']} names missing Secret {ref['name']}")
    for binding in find(objects, "ClusterRoleBinding"):
        if binding["roleRef"]["name"] not in {r["metadata"]["name"] for r in find(objects, "ClusterRole")}:
            problems.append(f"ClusterRoleBinding {binding['metadata']['name']} names a missing ClusterRole")
    return problems


# ---------------------------------------------------------------- lint and render

@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["default-values", *CI_IDS])
def test_chart_passes_strict_lint(helm, values):
    result = lint(helm, CHART, values)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_values_refuse_to_render_and_name_what_to_set(helm):
    """With no database, Redis or keys the chart stops at render time instead of installing pods that crash."""
    result = run(helm, "template", RELEASE, str(CHART))
    assert result.returncode != 0
    assert "the database is not configured: set database.url" in result.stderr


@pytest.mark.parametrize("values", CI_IDS)
def test_every_rendered_object_is_valid_kubernetes(values):
    objects = rendered(values)
    assert {"Deployment", "Service"} <= {obj["kind"] for obj in objects}, [obj["kind"] for obj in objects]
    assert schema_errors(objects) == []


@pytest.mark.parametrize("values", CI_IDS)
def test_every_pod_is_non_root_read_only_and_has_resources(values):
    assert security_problems(rendered(values)) == []


def existing_secrets(values_name: str) -> frozenset[str]:
    """The Secrets a values file says the operator created (existingSecret and friends)."""
    values = yaml.safe_load((CHART / "ci" / f"{values_name}.yaml").read_text())
    names = {values.get("existingSecret"), *(values.get(store, {}).get("existingSecret") for store in ("database", "redis"))}
    return frozenset(name for name in names if name)


@pytest.mark.parametrize("values", CI_IDS)
def test_services_routes_and_budgets_point_at_rendered_objects(values):
    assert reference_problems(rendered(values), existing_secrets(values)) == []


@pytest.mark.parametrize("values", CI_IDS)
def test_object_names_fit_kubernetes_limits(values):
    for obj in rendered(values):
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_every_process_runs_from_one_image_with_its_command():
    objects = rendered("minimal-values")
    commands = {c["name"]: c["command"] for obj in objects for c in containers(obj)}
    assert commands["web"][:2] == ["gunicorn", "controlplane.wsgi"]
    assert "--bind=0.0.0.0:8000" in commands["web"]
    assert commands["worker"][:3] == ["celery", "--app=controlplane", "worker"]
    assert commands["beat"][:3] == ["celery", "--app=controlplane", "beat"]
    assert "--schedule=/tmp/celerybeat-schedule" in commands["beat"]  # the root filesystem is read-only
    assert commands["gateway"] == ["python", "-m", "gateway"]
    assert commands["migrate"] == ["python", "manage.py", "migrate", "--no-input"]
    assert {c["image"] for obj in objects for c in containers(obj)} == {"controlplane:0.1.0"}


def test_web_and_gateway_probe_their_health_endpoints():
    objects = rendered("minimal-values")
    for component, port in (("web", 8000), ("gateway", 8080)):
        (container,) = containers(one(objects, "Deployment", component))
        assert container["ports"][0]["containerPort"] == port
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (web,) = containers(one(objects, "Deployment", "web"))
    config = one(objects, "ConfigMap")["data"]
    # Django validates the Host header: the probes must send one DJANGO_ALLOWED_HOSTS accepts.
    for probe in ("livenessProbe", "readinessProbe"):
        (host,) = [h["value"] for h in web[probe]["httpGet"]["httpHeaders"] if h["name"] == "Host"]
        assert host in config["DJANGO_ALLOWED_HOSTS"].split(",")


@pytest.mark.parametrize("values", CI_IDS)
def test_web_pods_serve_the_static_files_collected_into_the_image(values):
    # The image holds them at STATIC_ROOT (/app/staticfiles, collected at build time) and the web process
    # serves them itself (whitenoise): nothing may point STATIC_ROOT elsewhere or mount over /app, and the
    # web Ingress, when enabled, routes /static/ to the web pods with everything else.
    objects = rendered(values)
    config = one(objects, "ConfigMap")["data"]
    assert "DJANGO_STATIC_ROOT" not in config
    (web,) = containers(one(objects, "Deployment", "web"))
    assert "DJANGO_STATIC_ROOT" not in {e["name"] for e in web.get("env", [])}
    assert all(not m["mountPath"].startswith("/app") for m in web.get("volumeMounts", [])), web["volumeMounts"]
    assert "workingDir" not in web  # the image's /app, where manage.py and staticfiles/ are
    for ingress in find(objects, "Ingress", "web"):
        paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
        assert any(p["path"] == "/" and p["pathType"] == "Prefix" for p in paths), paths


def test_configuration_is_production_and_in_cluster_by_default():
    objects = rendered("minimal-values")
    config = one(objects, "ConfigMap")["data"]
    assert config["DJANGO_DEBUG"] == "false"
    worker = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-worker"))
    assert worker["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert any(o["kind"] == "ClusterRoleBinding" for o in objects)
    assert config["GATEWAY_BIND"] == "0.0.0.0:8080"
    # The per-endpoint NetworkPolicy admits the gateway's pods: this release's, in this namespace.
    gateway_pods = one(objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    assert config["GATEWAY_NAMESPACE"] == NAMESPACE
    assert dict(p.split("=") for p in config["GATEWAY_POD_LABELS"].split(",")).items() <= gateway_pods.items()
    secret = one(objects, "Secret", "config")
    assert set(secret["data"]) == {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "SECRETS_ENCRYPTION_KEY"}
    # Without an Ingress or HTTPRoute in front, the gateway's peer is the client: no proxy is trusted.
    assert "GATEWAY_TRUSTED_PROXIES" not in config
    # The gateway serves metrics only for the token Prometheus sends; the Secret may hold it, or not.
    (gateway,) = containers(one(objects, "Deployment", "gateway"))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in gateway["env"] if "valueFrom" in e}
    assert refs["GATEWAY_METRICS_TOKEN"]["optional"] is True and refs["GATEWAY_RECORD_KEY"]["optional"] is True


def test_ingress_values_route_the_api_host_and_the_gateway_wildcard():
    objects = rendered("ingress-values")
    web = one(objects, "Ingress", "web")
    gateway = one(objects, "Ingress", "gateway")
    assert web["spec"]["rules"][0]["host"] == "endpoints-api.example.com"
    assert gateway["spec"]["rules"][0]["host"] == "*.endpoints.example.com"
    assert gateway["spec"]["tls"] == [{"hosts": ["*.endpoints.example.com"], "secretName": "endpoints-wildcard-tls"}]
    config = one(objects, "ConfigMap")["data"]
    assert "endpoints-api.example.com" in config["DJANGO_ALLOWED_HOSTS"].split(",")
    assert "https://endpoints-api.example.com" in config["DJANGO_CSRF_TRUSTED_ORIGINS"].split(",")
    assert not find(objects, "HTTPRoute")
    assert config["GATEWAY_TRUSTED_PROXIES"] == "1"  # the ingress controller's X-Forwarded-For names the client


def test_httproute_values_attach_the_gateway_wildcard_to_the_named_gateway():
    objects = rendered("httproute-values")
    route = one(objects, "HTTPRoute")
    assert route["spec"]["hostnames"] == ["*.endpoints.example.com"]
    assert route["spec"]["parentRefs"][0]["name"] == "public"
    assert not find(objects, "Ingress") and not find(objects, "HorizontalPodAutoscaler")
    assert one(objects, "Deployment", "gateway")["spec"]["replicas"] == 3


def test_beat_is_a_single_pod_replaced_not_rolled():
    for values in CI_IDS:
        beat = one(rendered(values), "Deployment", "beat")
        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}


# ---------------------------------------------------------------- the migrate hook

def hook(obj: dict) -> tuple[set[str], int]:
    annotations = obj["metadata"].get("annotations", {})
    return set(annotations.get("helm.sh/hook", "").split(",")) - {""}, int(annotations.get("helm.sh/hook-weight", 0))


@pytest.mark.parametrize("values", CI_IDS)
def test_migrate_job_is_a_pre_install_and_pre_upgrade_hook_with_everything_it_needs(values):
    """The hook runs before the release's ConfigMap, Secret and ServiceAccount exist, so it may use none
    of them: its settings are inline and its keys come from a hook Secret of lower weight (or from
    existingSecret, which the operator created beforehand)."""
    objects = rendered(values)
    job = one(objects, "Job", "migrate")
    events, weight = hook(job)
    assert events == {"pre-install", "pre-upgrade"}
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "default" and spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert "envFrom" not in container
    inline = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert inline.pop("CONTROLPLANE_PROCESS") == "migrate"  # which keys the settings require (none)
    assert inline == one(objects, "ConfigMap")["data"]
    hook_secrets = {s["metadata"]["name"]: s for s in find(objects, "Secret") if hook(s)[0]}
    release_secrets = [s for s in find(objects, "Secret") if not hook(s)[0]]
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if not ref or ref.get("optional"):
            continue
        if ref["name"] in hook_secrets:
            secret = hook_secrets[ref["name"]]
            assert hook(secret)[0] >= events and hook(secret)[1] < weight
            assert ref["key"] in secret["data"]
            (release,) = release_secrets
            assert secret["data"] == release["data"]  # the same values as the release's Secret
        else:
            assert ref["name"] not in {s["metadata"]["name"] for s in release_secrets}, ref


def test_only_the_worker_and_the_watcher_get_a_kubernetes_token_and_only_in_cluster():
    for values, in_cluster in (("minimal-values", True), ("remote-clusters-values", False)):
        objects = rendered(values)
        mounts = {obj["metadata"]["labels"]["app.kubernetes.io/component"]:
                  pod_spec(obj)["automountServiceAccountToken"] for obj in objects if pod_spec(obj)}
        assert mounts == {"web": False, "gateway": False, "worker": in_cluster, "watcher": in_cluster, "beat": False,
                          "migrate": False}


# ---------------------------------------------------------------- RBAC

def test_cluster_role_grants_exactly_the_kinds_and_verbs_the_reconciler_uses():
    objects = rendered("minimal-values")
    assert rbac_problems(objects) == []
    binding = one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert NAMESPACE in binding["roleRef"]["name"]  # two releases in two namespaces never share it


@pytest.mark.parametrize("values", ["rbac-off-values", "remote-clusters-values"])
def test_no_cluster_role_when_rbac_is_off_or_in_cluster_mode_is(values):
    objects = rendered(values)
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")


# ---------------------------------------------------------------- values documentation

FREE_FORM = {"resources", "annotations", "affinity", "nodeSelector", "tolerations", "podAnnotations", "podLabels",
             "extraEnv", "parentRefs", "imagePullSecrets"}


def test_every_values_key_is_documented_by_a_comment_starting_with_its_name():
    lines = (CHART / "values.yaml").read_text().splitlines()
    path: list[tuple[int, str]] = []
    undocumented = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- ") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while path and path[-1][0] >= indent:
            path.pop()
        if any(key in FREE_FORM for _, key in path):
            continue  # inside a Kubernetes structure, documented by its parent
        key = stripped.split(":", 1)[0]
        path.append((indent, key))
        dotted = ".".join(k for _, k in path)
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            above -= 1
        comment = [each.strip() for each in lines[above + 1:number]]
        if not comment or not comment[0].startswith(f"# {dotted}:"):
            undocumented.append(dotted)
    assert undocumented == []


def test_schema_rejects_a_misspelt_value(helm):
    result = run(helm, "lint", "--strict", str(CHART), "--set", "web.replicaCount=3")
    assert result.returncode != 0
    assert "replicaCount" in result.stdout + result.stderr


# ---------------------------------------------------------------- the checks fail on breakage

def test_lint_fails_on_a_template_with_invalid_yaml(helm, tmp_path):
    chart = copy_chart(tmp_path)
    (chart / "templates" / "broken.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n")
    assert lint(helm, chart, CHART / "ci" / "minimal-values.yaml").returncode != 0


def test_strict_validation_rejects_an_unknown_field(helm, tmp_path):
    chart = copy_chart(tmp_path)
    service = chart / "templates" / "web-service.yaml"
    service.write_text(service.read_text().replace("spec:\n  type:", "spec:\n  tipe: ClusterIP\n  type:"))
    objects = render(helm, chart, CHART / "ci" / "minimal-values.yaml")
    errors = schema_errors(objects)
    assert len(errors) == 1 and "tipe" in errors[0]


def test_httproute_validation_rejects_an_unknown_field():
    objects = [dict(obj) for obj in rendered("httproute-values")]
    route = one(objects, "HTTPRoute")
    route["spec"] = {**route["spec"], "hostname": ["x.example.com"]}
    assert [e for e in schema_errors(objects) if "hostname" in e]


def test_security_check_catches_a_writable_root_and_a_missing_request(helm, tmp_path):
    chart = copy_chart(tmp_path)
    helpers = chart / "templates" / "_helpers.tpl"
    helpers.write_text(helpers.read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"))
    values = tmp_path / "values.yaml"
    values.write_text((CHART / "ci" / "minimal-values.yaml").read_text() + "beat:\n  resources:\n    requests:\n"
                      "      cpu: 10m\n      memory: 64Mi\n    limits: null\n")
    problems = security_problems(render(helm, chart, values))
    assert any("beat/beat: resources.limits must set memory" in p for p in problems)
    assert any("web/web: readOnlyRootFilesystem must be true" in p for p in problems)


def test_rbac_check_catches_a_verb_too_many_and_one_too_few(helm, tmp_path):
    chart = copy_chart(tmp_path)
    role = chart / "templates" / "clusterrole.yaml"
    text = role.read_text()
    for resources, verbs, broken in (('"pods/log"', '["get"]', '["get", "watch"]'),
                                     ('"events"', '["get", "list"]', '["get"]')):
        rule = f'resources: [{resources}]\n    verbs: '
        assert rule + verbs in text
        text = text.replace(rule + verbs, rule + broken)
    role.write_text(text)
    missing, extra = rbac_difference(render(helm, chart, CHART / "ci" / "minimal-values.yaml"))
    assert missing == {("", "events", "list")}
    assert extra == {("", "pods/log", "watch")}


def test_reference_check_catches_a_service_that_selects_nothing(helm, tmp_path):
    chart = copy_chart(tmp_path)
    service = chart / "templates" / "gateway-service.yaml"
    service.write_text(service.read_text().replace(
        '{{- include "controlplane.selectorLabels" $c | nindent 4 }}', "app.kubernetes.io/component: gatewy"))
    problems = reference_problems(render(helm, chart, CHART / "ci" / "minimal-values.yaml"))
    assert any("selects no Deployment" in p for p in problems)


# ---------------------------------------------------------------- NetworkPolicies of the chart's own pods

def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and In / NotIn / Exists / DoesNotExist expressions) against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if not {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[operator]:
            return False
    return True


def pods(objects) -> dict[str, dict]:
    """component -> the pod template labels of every Deployment and Job."""
    return {obj["metadata"]["labels"]["app.kubernetes.io/component"]: obj["spec"]["template"]["metadata"]["labels"]
            for obj in objects if pod_spec(obj)}


def ingress_of(objects, labels: dict, namespace: str = NAMESPACE) -> list[dict] | None:
    """The ingress rules of every policy in ``namespace`` that selects a pod with ``labels``, or None when none
    selects it (then it admits everything)."""
    policies = [p for p in find(objects, "NetworkPolicy") if p["metadata"].get("namespace", NAMESPACE) == namespace
                and "Ingress" in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)]
    return None if not policies else [rule for p in policies for rule in p["spec"].get("ingress", [])]


def admitted_components(rule: dict, objects) -> set[str]:
    """The chart's components whose pods (in the release's namespace) a rule's peers admit."""
    admitted = set()
    for component, labels in pods(objects).items():
        for peer in rule["from"]:
            namespace_ok = selects(peer.get("namespaceSelector", {"matchLabels": {"x": "no namespace selector"}}),
                                   {"kubernetes.io/metadata.name": NAMESPACE})
            if namespace_ok and selects(peer.get("podSelector", {}), labels):
                admitted.add(component)
    return admitted


def test_item03_web_and_gateway_admit_only_their_serving_ports_and_the_rest_admit_nothing():
    """On by default: every pod the chart runs is selected; web and gateway take any source (the ingress
    controller, the internet) but only on the port they serve; worker, beat and migrate listen on nothing."""
    for values in CI_IDS:
        objects = rendered(values)
        serving = {"web": 8000, "gateway": 8080}
        for component, labels in pods(objects).items():
            rules = ingress_of(objects, labels)
            assert rules is not None, f"{values}: no NetworkPolicy selects the {component} pods"
            if component in serving:
                ports = [port for rule in rules for port in rule["ports"]]
                assert ports == [{"protocol": "TCP", "port": serving[component]}], (values, component)
                (container,) = containers(one(objects, "Deployment", component))
                assert serving[component] in {p["containerPort"] for p in container["ports"]}
                if values != "network-policy-values":
                    assert ["from" in rule for rule in rules] == [False], (values, component)  # any source
            else:
                assert rules == [], (values, component)


def test_item03_the_peers_admitted_to_web_and_gateway_are_configurable():
    objects = rendered("network-policy-values")
    (rule,) = ingress_of(objects, pods(objects)["web"])
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    (gateway,) = ingress_of(objects, pods(objects)["gateway"])
    assert "from" not in gateway


def secret_urls(objects) -> dict[str, set[str]]:
    """component -> the data store URLs its container is given."""
    return {obj["metadata"]["labels"]["app.kubernetes.io/component"]:
            {e["name"] for c in containers(obj) for e in c.get("env", [])} & {"DATABASE_URL", "REDIS_URL"}
            for obj in objects if pod_spec(obj)}


def test_item03_in_cluster_datastores_admit_only_the_processes_that_use_them():
    objects = rendered("network-policy-values")
    urls = secret_urls(objects)
    for namespace, labels, url, ports in (("db", {"cnpg.io/cluster": "controlplane"}, "DATABASE_URL", [5432]),
                                          ("cache", {"app.kubernetes.io/name": "redis"}, "REDIS_URL",
                                           [6379, "redis-sentinel"])):
        (rule,) = ingress_of(objects, labels, namespace)
        assert [p["port"] for p in rule["ports"]] == ports
        # Exactly the chart's processes given that store's URL: the gateway reads both, beat only Redis,
        # migrate only Postgres.
        assert admitted_components(rule, objects) == {c for c, given in urls.items() if url in given}, namespace
        assert "gateway" in admitted_components(rule, objects)
        # Nothing outside the release's namespace: every peer is pinned to it.
        assert all(peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
                   for peer in rule["from"])
        assert ingress_of(objects, {"app": "someone-else"}, namespace) is None  # other pods there untouched
    assert not [p for p in find(rendered("minimal-values"), "NetworkPolicy") if p["metadata"].get("namespace")]


def test_item03_network_policies_can_be_turned_off(helm, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text((CHART / "ci" / "minimal-values.yaml").read_text() + "networkPolicy:\n  enabled: false\n")
    assert not find(render(helm, CHART, values), "NetworkPolicy")


def test_item03_a_datastore_without_a_pod_selector_is_refused(helm, tmp_path):
    """An empty podSelector would fence every pod of the datastore's namespace: the schema refuses it."""
    values = tmp_path / "values.yaml"
    values.write_text((CHART / "ci" / "minimal-values.yaml").read_text() + "networkPolicy:\n  datastores:\n"
                      "    - {name: pg, kind: postgres, namespace: db, podSelector: {}, ports: [5432]}\n")
    result = lint(helm, CHART, values)
    assert result.returncode != 0 and "podSelector" in result.stdout + result.stderr


def test_item03_the_policy_check_catches_a_pod_no_policy_selects(helm, tmp_path):
    chart = copy_chart(tmp_path)
    policy = chart / "templates" / "networkpolicy.yaml"
    policy.write_text(policy.read_text().replace('values: ["worker", "watcher", "beat", "migrate"]',
                                                 'values: ["worker"]'))
    objects = render(helm, chart, CHART / "ci" / "minimal-values.yaml")
    assert ingress_of(objects, pods(objects)["beat"]) is None
