"""Shared fixtures: API clients per caller, a clean Redis database for queued messages, static files."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test.utils import override_settings

from tests.factories import make_user
from tests.helpers import api_client, user_api


@pytest.fixture(autouse=True, scope="session")
def _static_files_without_collectstatic():
    """Pages rendered in this process name static files as they are in the apps' directories, and whitenoise
    serves them from there, as with DEBUG on.

    The production storage (hashed names from the manifest ``collectstatic`` writes) refuses to name a file
    that was never collected, and pytest-django turns DEBUG off, so the admin would not render here without
    a collectstatic run. Tests of the production storage run a server of their own on ``collected_static``.
    """
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
            WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True):
        yield


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory) -> Path:
    """A STATIC_ROOT filled by ``manage.py collectstatic`` with the production settings' storage (pass it to a
    process as ``DJANGO_STATIC_ROOT``)."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"], check=True,
                   cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "DJANGO_STATIC_ROOT": str(root)})
    return root


class Broker:
    """This run's queue in the test Redis database."""

    def __init__(self):
        self.redis = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        self.queue = settings.CELERY_TASK_DEFAULT_QUEUE

    def messages(self) -> list[bytes]:
        return self.redis.lrange(self.queue, 0, -1)

    def clear(self) -> None:
        self.redis.delete(self.queue, f"{self.queue}\x06\x163", f"{self.queue}\x06\x166",
                          f"{self.queue}\x06\x169")


@pytest.fixture
def broker():
    """This run's queue, emptied before and after the test."""
    client = Broker()
    client.clear()
    yield client
    client.clear()
    client.redis.close()


@pytest.fixture
def alice(db):
    return make_user("alice", email="alice@example.com")


@pytest.fixture
def alice_api(alice):
    return user_api(alice)


@pytest.fixture
def anon_api():
    return api_client()


@pytest.fixture(autouse=True)
def _seeded_catalog(request):
    """Transactional tests flush every table afterwards, the seeded instance table and inference catalog
    included: put them back."""
    marker = request.node.get_closest_marker("django_db")
    transactional = {"transactional_db", "live_server"} & set(request.fixturenames) or (
        marker is not None and marker.kwargs.get("transaction"))
    if transactional:
        request.getfixturevalue("transactional_db")
        from endpoints.catalog import model_catalog_seed
        from quotas.services import catalog_seed

        catalog_seed()
        model_catalog_seed()


@pytest.fixture
def fake_hub(settings):
    from tests.fakehub import FakeHub

    hub = FakeHub().start()
    settings.HF_HUB_URL = hub.url
    settings.HF_HUB_TOKEN = None
    yield hub
    hub.stop()


@pytest.fixture
def cluster(db, fake_kube, tmp_path):
    """The fake API server registered as the aws/us-east-1 cluster, through the real command's service."""
    from deployments.services import cluster_register

    path = tmp_path / "kubeconfig.yaml"
    fake_kube.write_kubeconfig(str(path))
    return cluster_register(name="fake", vendor="aws", region="us-east-1", kubeconfig_text=path.read_text(),
                            ingress_domain="endpoints.test")


# ---------------------------------------------------------------- gateway (tests/gatewayrig.py)
@pytest.fixture
def gateway_prefix(settings):
    """A Redis key prefix of this test's own for the route feed and activity; its keys are removed after."""
    import uuid

    prefix, url = f"test-gw-{uuid.uuid4().hex[:8]}:", settings.REDIS_URL
    settings.GATEWAY_REDIS_PREFIX = prefix
    yield prefix
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def upstream():
    """The stub Service every endpoint's traffic reaches."""
    from tests.gatewayrig import StubUpstream

    stub = StubUpstream()
    yield stub
    stub.stop()


@pytest.fixture
def gateway_cluster(db, upstream):
    """aws/us-east-1 whose every endpoint Service is the stub upstream (no Kubernetes needed)."""
    from deployments.services import cluster_register

    return cluster_register(name="gw", vendor="aws", region="us-east-1", in_cluster=True,
                            ingress_domain="endpoints.test", service_url_template=upstream.url)


@pytest.fixture
def gateway(gateway_prefix, tmp_path):
    """Start ``python -m gateway`` processes (keyword arguments become environment variables)."""
    from tests.gatewayrig import GatewayProcess

    started = []

    def start(**env):
        process = GatewayProcess(tmp_path / f"gateway-{len(started)}.log", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        print(f"----- gateway log\n{process.log()}")


# ---------------------------------------------------------------- AWS (a local moto server)
@pytest.fixture
def moto(settings):
    """A moto server on a free port; every boto3 client of the control plane goes there (AWS_ENDPOINT_URL).
    Yields a factory of plain boto3 clients for the test's own setup and checks."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from tests.helpers import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{port}"

    def client(service: str, region: str = "us-east-1"):
        return boto3.client(service, region_name=region, endpoint_url=settings.AWS_ENDPOINT_URL,
                            aws_access_key_id="test", aws_secret_access_key="test")

    yield client
    server.stop()


@pytest.fixture
def aws_cluster(db, fake_kube, moto, tmp_path):
    """The fake API server registered as aws/us-east-1 with AWS access keys (stored encrypted)."""
    from deployments.services import cluster_register

    path = tmp_path / "kubeconfig.yaml"
    fake_kube.write_kubeconfig(str(path))
    return cluster_register(name="fake", vendor="aws", region="us-east-1", kubeconfig_text=path.read_text(),
                            ingress_domain="endpoints.test", aws_access_key_id="AKIATEST",
                            aws_secret_access_key="secret-test-key")
