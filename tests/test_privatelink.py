"""PrivateLink for private endpoints, against the fake API server and a local moto server: the internal NLB
Service, the endpoint service on the NLB the load-balancer controller created, its permissions, and its
removal when the endpoint stops being private or is deleted.
"""

import time

import pytest

from deployments.names import private_lb_name
from deployments.reconcile import Retry, endpoint_reconcile
from endpoints import services
from endpoints.models import Endpoint
from tests.helpers import user_api
from tests.kube_helpers import NS, converge, create

LINK = {"accountId": "123456789012", "region": "us-east-1"}
SERVICE = "private-ep-web"


def lb_controller(client, name: str, stack: str) -> str:
    """What the AWS load-balancer controller does for the Service: an internal NLB in the VPC."""
    ec2, elbv2 = client("ec2"), client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")
               ["Subnet"]["SubnetId"] for i, z in ((1, "a"), (2, "b"))]
    return elbv2.create_load_balancer(Name=name, Subnets=subnets, Scheme="internal", Type="network",
                                      Tags=[{"Key": "service.k8s.aws/stack", "Value": stack}]
                                      )["LoadBalancers"][0]["LoadBalancerArn"]


def reconcile_for(endpoint_id: int, seconds: float) -> Endpoint:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            endpoint_reconcile(endpoint_id=endpoint_id)
        except Retry:
            pass
        time.sleep(0.1)
    return Endpoint.objects.get(pk=endpoint_id)


def configurations(client) -> list[dict]:
    return client("ec2").describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]


def principals(client, service_id: str) -> list[str]:
    allowed = client("ec2").describe_vpc_endpoint_service_permissions(ServiceId=service_id)["AllowedPrincipals"]
    return [p["Principal"] for p in allowed]


def test_private_endpoint_gets_an_endpoint_service_once_its_nlb_exists(alice, aws_cluster, fake_kube, fake_hub, moto):
    endpoint = create(alice, type="private", privateService=LINK)
    endpoint = reconcile_for(endpoint.pk, 1.5)  # pods are ready after 0.5 s; the NLB is still missing
    assert endpoint.state == "initializing" and "internal load balancer" in endpoint.message
    assert endpoint.private_service_name is None
    nlb = fake_kube.get_object("services", NS, SERVICE)
    annotations = nlb["metadata"]["annotations"]
    assert nlb["spec"]["type"] == "LoadBalancer"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "external"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert fake_kube.get_object("networkpolicies", NS, "gateway-ep-web") is None  # the gateway never reaches it

    arn = lb_controller(moto, annotations["service.beta.kubernetes.io/aws-load-balancer-name"], f"{NS}/{SERVICE}")
    endpoint = converge(endpoint.pk, "running")
    config, = configurations(moto)
    assert config["NetworkLoadBalancerArns"] == [arn] and config["AcceptanceRequired"] is False
    assert endpoint.private_service_name == config["ServiceName"]
    assert endpoint.url == "http://ep-web.ie-alice.svc.cluster.local:80"  # internal: never the gateway's
    assert principals(moto, config["ServiceId"]) == ["arn:aws:iam::123456789012:root"]
    body = user_api(alice).get("/v2/endpoint/alice/web").json()
    assert body["status"]["private"] == {"serviceName": config["ServiceName"]}

    # A second pass changes nothing; a new account id replaces the allowed principal.
    converge(endpoint.pk, "running")
    assert len(configurations(moto)) == 1
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice,
                             patch={"privateService": {"accountId": "210987654321", "region": "us-east-1"}})
    converge(endpoint.pk, "running")
    assert principals(moto, config["ServiceId"]) == ["arn:aws:iam::210987654321:root"]

    # No longer private: the endpoint service goes (before its NLB's Service), the gateway is admitted.
    services.endpoint_update(account=alice.personal_account, name="web", actor=alice, patch={"type": "protected"})
    endpoint = converge(endpoint.pk, "running")
    assert configurations(moto) == [] and endpoint.private_service_name is None
    assert endpoint.url.startswith("https://web-") and endpoint.url.endswith(".endpoints.test")
    assert fake_kube.get_object("services", NS, SERVICE) is None
    assert fake_kube.get_object("networkpolicies", NS, "gateway-ep-web") is not None


def test_deleting_a_private_endpoint_deletes_its_endpoint_service(alice, aws_cluster, fake_kube, fake_hub, moto):
    endpoint = create(alice, type="private", privateService=LINK)
    namespace_name = NS
    # This controller ignored the name annotation: the NLB is found by the controller's stack tag.
    lb_controller(moto, "k8s-ieali-epwebpri-0123456789", f"{namespace_name}/{SERVICE}")
    endpoint = converge(endpoint.pk, "running")
    assert endpoint.private_service_name and len(configurations(moto)) == 1
    services.endpoint_delete(account=alice.personal_account, name="web", actor=alice)
    converge(endpoint.pk, "gone")
    assert configurations(moto) == []


def test_private_service_without_aws_access_fails_with_the_reason(alice, cluster, fake_kube, fake_hub):
    endpoint = converge(create(alice, type="private", privateService=LINK).pk, "failed")
    assert "no AWS access" in endpoint.message


@pytest.mark.parametrize("region", ["eu-west-1"])
def test_cross_region_privatelink_offers_the_customer_region(alice, aws_cluster, fake_kube, fake_hub, moto, region):
    endpoint = create(alice, type="private", privateService={"accountId": "123456789012", "region": region})
    lb_controller(moto, private_lb_name(NS, SERVICE), f"{NS}/{SERVICE}")
    converge(endpoint.pk, "running")
    config, = configurations(moto)
    assert [r["Region"] for r in config["SupportedRegions"]] == [region]
