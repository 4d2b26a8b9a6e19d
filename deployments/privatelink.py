"""AWS PrivateLink for private endpoints with ``privateService``: a VPC endpoint service on the endpoint's
internal NLB, open to the customer's AWS account.

The renderer asks the AWS load-balancer controller for the NLB (a LoadBalancer Service named
``ep-<name>-private`` whose load balancer is named ``names.private_lb_name``); this module finds it and
puts an endpoint service on it. Both functions are idempotent, called by the reconciler on every pass,
and raise ``aws.AwsError`` (transient or permanent) or ``PrivateLinkPending``.
"""

import logging

from .aws import AwsError, aws_call, aws_client, pages
from .names import LABEL_ID, private_lb_name

log = logging.getLogger(__name__)
STACK_TAG = "service.k8s.aws/stack"  # set by the AWS load-balancer controller: "<namespace>/<service>"
ID_TAG = LABEL_ID  # the NLB's endpoint service is tagged like the endpoint's objects are labelled


class PrivateLinkPending(Exception):
    """The NLB is not there (or not active) yet: retry after a while; the endpoint stays initializing."""


def _find_nlb(elbv2, namespace: str, service: str) -> dict | None:
    stack = f"{namespace}/{service}"
    try:
        found = aws_call(elbv2.describe_load_balancers, Names=[private_lb_name(namespace, service)])
        return found["LoadBalancers"][0]
    except AwsError as exc:
        if exc.code != "LoadBalancerNotFound":
            raise
    # Not under the expected name (an older controller, or the name annotation ignored): look for the tag.
    balancers = [lb for lb in pages(elbv2.describe_load_balancers, "LoadBalancers") if lb.get("Type") == "network"]
    for start in range(0, len(balancers), 20):
        chunk = balancers[start:start + 20]
        described = aws_call(elbv2.describe_tags, ResourceArns=[lb["LoadBalancerArn"] for lb in chunk])
        for entry in described["TagDescriptions"]:
            if any(t["Key"] == STACK_TAG and t["Value"] == stack for t in entry.get("Tags", [])):
                return next(lb for lb in chunk if lb["LoadBalancerArn"] == entry["ResourceArn"])
    return None


def _configurations(ec2) -> list[dict]:
    return list(pages(ec2.describe_vpc_endpoint_service_configurations, "ServiceConfigurations"))


def privatelink_ensure(*, cluster, endpoint_id: int, namespace: str, service: str, account_id: str,
                       region: str) -> str:
    """The endpoint service on the NLB of ``namespace/service``, created if missing, allowing exactly
    ``arn:aws:iam::<account_id>:root``; returns its ServiceName. ``region`` is the customer's PrivateLink
    region: when it differs from the cluster's, the service is offered there too (cross-region)."""
    elbv2, ec2 = aws_client(cluster, "elbv2"), aws_client(cluster, "ec2")
    nlb = _find_nlb(elbv2, namespace, service)
    if nlb is None:
        raise PrivateLinkPending("Waiting for the internal load balancer of the private service to be created")
    if (nlb.get("State") or {}).get("Code", "active") != "active":
        raise PrivateLinkPending(f"Waiting for the internal load balancer ({nlb['State']['Code']})")
    arn = nlb["LoadBalancerArn"]
    config = next((c for c in _configurations(ec2) if arn in (c.get("NetworkLoadBalancerArns") or [])), None)
    if config is None:
        extra = {"SupportedRegions": [region]} if region and region != cluster.region else {}
        config = aws_call(ec2.create_vpc_endpoint_service_configuration, NetworkLoadBalancerArns=[arn],
                          AcceptanceRequired=False, TagSpecifications=[{
                              "ResourceType": "vpc-endpoint-service",
                              "Tags": [{"Key": ID_TAG, "Value": str(endpoint_id)}]}], **extra)["ServiceConfiguration"]
        log.info("privatelink.created endpoint=%s service=%s", endpoint_id, config["ServiceName"])
    wanted = f"arn:aws:iam::{account_id}:root"
    allowed = {p["Principal"] for p in aws_call(ec2.describe_vpc_endpoint_service_permissions,
                                                ServiceId=config["ServiceId"]).get("AllowedPrincipals", [])}
    if allowed != {wanted}:
        changes = {"AddAllowedPrincipals": [wanted]} if wanted not in allowed else {}
        if allowed - {wanted}:
            changes["RemoveAllowedPrincipals"] = sorted(allowed - {wanted})
        aws_call(ec2.modify_vpc_endpoint_service_permissions, ServiceId=config["ServiceId"], **changes)
    return config["ServiceName"]


def privatelink_remove(*, cluster, service_name: str | None, namespace: str, service: str) -> bool:
    """Delete the endpoint's endpoint service (by its name, or by the NLB it sits on). False if none was left.

    Run before the NLB's Service is pruned: AWS refuses to delete an NLB that an endpoint service uses."""
    ec2 = aws_client(cluster, "ec2")
    configs = _configurations(ec2)
    config = next((c for c in configs if service_name and c.get("ServiceName") == service_name), None)
    if config is None:
        nlb = _find_nlb(aws_client(cluster, "elbv2"), namespace, service)
        arn = nlb["LoadBalancerArn"] if nlb else None
        config = next((c for c in configs if arn and arn in (c.get("NetworkLoadBalancerArns") or [])), None)
    if config is None:
        return False
    aws_call(ec2.delete_vpc_endpoint_service_configurations, ServiceIds=[config["ServiceId"]])
    log.info("privatelink.deleted service=%s", config["ServiceName"])
    return True
