"""ECR pull credentials against a local moto server: an ECR image on a cluster with AWS access gets an image
pull Secret from ``ecr.get_authorization_token``, stored once per registry and refreshed when due.
"""

import base64
import json
from datetime import timedelta

import pytest

from controlplane.services import account_registry_grant
from deployments.models import RegistryCredential
from deployments.registry import ecr_registry, endpoints_with_due_credentials, registry_credentials
from endpoints import services
from tests.kube_helpers import NS, converge, create, deployment

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/server:1"
SERVER = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def custom(url: str, **extra) -> dict:
    return {"model": {"image": {"custom": {"url": url, "port": 8080, **extra}}}}


def pull_config(fake_kube, name: str = "registry-ep-web") -> dict:
    secret = fake_kube.get_object("secrets", NS, name)
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


def test_ecr_image_pulls_with_a_token_from_ecr(alice, aws_cluster, fake_kube, fake_hub, moto):
    account_registry_grant(account=alice.personal_account, server=SERVER)
    endpoint = converge(create(alice, **custom(ECR_IMAGE)).pk, "running")
    auth = pull_config(fake_kube)["auths"][SERVER]
    assert (auth["username"], auth["password"]) == ("AWS", "123456789012-auth-token")  # moto's token
    pod = deployment(fake_kube)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-ep-web"}]
    credential = RegistryCredential.objects.get(server=SERVER)
    fetched = credential.fetched_at

    converge(endpoint.pk, "running")  # not due: the stored credential is used, AWS is not asked again
    assert RegistryCredential.objects.get(server=SERVER).fetched_at == fetched

    later = fetched + timedelta(hours=6, seconds=1)
    assert endpoints_with_due_credentials(now=later) == [endpoint.pk]
    assert endpoints_with_due_credentials(now=fetched + timedelta(hours=5)) == []
    registry_credentials(cluster=aws_cluster, image_url=ECR_IMAGE, refresh=True, now=later)
    assert RegistryCredential.objects.get(server=SERVER).fetched_at == later


def test_explicit_credentials_win_and_other_registries_get_no_ecr_token(alice, aws_cluster, fake_kube, fake_hub,
                                                                         moto):
    converge(create(alice, "own", **custom(ECR_IMAGE, credentials={"username": "me", "password": "pw"})).pk,
             "running")
    assert pull_config(fake_kube, "registry-ep-own")["auths"][SERVER]["username"] == "me"
    converge(create(alice, "hub", **custom("ghcr.io/acme/server:1")).pk, "running")
    assert fake_kube.get_object("secrets", NS, "registry-ep-hub") is None
    assert RegistryCredential.objects.count() == 0


def test_ecr_image_on_a_cluster_without_aws_pulls_without_secret(alice, cluster, fake_kube, fake_hub):
    # Granted even so: the nodes' own cloud identity (an instance role) may pull ECR images.
    ungranted = converge(create(alice, "ungranted", **custom(ECR_IMAGE)).pk, "failed")
    assert ungranted.message.startswith(f"Endpoint refused: the image pulls from {SERVER}, which this account may "
                                        "not pull from"), ungranted.message
    account_registry_grant(account=alice.personal_account, server=SERVER)
    converge(create(alice, **custom(ECR_IMAGE)).pk, "running")
    assert "imagePullSecrets" not in deployment(fake_kube)["spec"]["template"]["spec"]


def test_ecr_urls_are_recognised():
    assert ecr_registry(ECR_IMAGE) == (SERVER, "123456789012", "us-east-1")
    assert ecr_registry("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/x:1")[2] == "us-gov-west-1"
    assert ecr_registry("registry.example.com/123456789012.dkr.ecr.us-east-1.amazonaws.com/x") is None
    assert ecr_registry("public.ecr.aws/x/y:1") is None


def test_register_cluster_takes_aws_keys_from_the_environment_and_stores_them_encrypted(db, tmp_path, monkeypatch,
                                                                                         fake_kube):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from deployments.aws import aws_enabled
    from deployments.models import Cluster

    path = tmp_path / "kubeconfig.yaml"
    fake_kube.write_kubeconfig(str(path))
    monkeypatch.setenv("CLUSTER_AWS_SECRET_ACCESS_KEY", "planted-aws-secret")
    call_command("register_cluster", "--name", "c1", "--vendor", "aws", "--region", "us-east-1", "--kubeconfig",
                 str(path), "--aws-access-key-id", "AKIAPLANTED")
    cluster = Cluster.objects.get(name="c1")
    assert aws_enabled(cluster) and "planted-aws-secret" not in cluster.aws_credentials_encrypted
    assert not Cluster.objects.filter(aws_credentials_encrypted__contains="AKIAPLANTED").exists()
    monkeypatch.delenv("CLUSTER_AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CommandError, match="secret access key"):
        call_command("register_cluster", "--name", "c1", "--vendor", "aws", "--region", "us-east-1", "--kubeconfig",
                     str(path), "--aws-access-key-id", "AKIAPLANTED")
    call_command("register_cluster", "--name", "c1", "--vendor", "aws", "--region", "us-east-1", "--kubeconfig",
                 str(path), "--aws-ambient")
    cluster.refresh_from_db()
    assert cluster.aws_ambient and not cluster.aws_credentials_encrypted


def test_item02_the_clusters_ecr_identity_pulls_only_registries_granted_to_the_account(alice, aws_cluster, fake_kube,
                                                                                      fake_hub, moto):
    other = "999999999999.dkr.ecr.us-east-1.amazonaws.com/victim/weights:1"
    endpoint = converge(create(alice, **custom(other)).pk, "failed")
    assert "999999999999.dkr.ecr.us-east-1.amazonaws.com" in endpoint.message and "grant" in endpoint.message
    assert RegistryCredential.objects.count() == 0  # the cluster's AWS identity was never asked
    assert fake_kube.get_object("secrets", NS, "registry-ep-web") is None
    account_registry_grant(account=alice.personal_account, server="999999999999.dkr.ecr.us-east-1.amazonaws.com")
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice, patch={"tags": ["granted"]})
    converge(endpoint.pk, "running")
    assert pull_config(fake_kube)["auths"]["999999999999.dkr.ecr.us-east-1.amazonaws.com"]["username"] == "AWS"
