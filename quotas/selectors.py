"""Reads of the catalog, quotas and usage."""

from django.conf import settings

from controlplane.errorcodes import Code
from controlplane.models import Account

from .errors import UnknownInstance
from .models import Accelerator, InstanceType, Quota, QuotaRequest

UNIT = {"cpu": "vCPUs", "gpu": "GPUs", "neuron": "Neuron devices"}


def default_limit(accelerator: str) -> int:
    return {"cpu": settings.DEFAULT_QUOTA_CPU, "gpu": settings.DEFAULT_QUOTA_GPU,
            "neuron": settings.DEFAULT_QUOTA_NEURON}[accelerator]


def instance_get(*, vendor: str, region: str, accelerator: str, instance_type: str, instance_size: str) -> InstanceType:
    """The orderable catalog entry for this compute, or UnknownInstance naming the first field that is wrong."""
    instance = InstanceType.objects.filter(vendor=vendor, region=region, accelerator=accelerator,
                                           instance_type=instance_type, instance_size=instance_size).first()
    if instance is not None:
        if not instance.orderable:
            message = f"Instance {instance.compute_id} is {instance.get_status_display()} and cannot be used"
            raise UnknownInstance(message, code=Code.INSTANCE_UNAVAILABLE, fields={"compute.instanceType": [message]})
        return instance
    # Not found: narrow field by field to name the first one that matches nothing.
    rows = InstanceType.objects.filter(vendor=vendor)
    steps = [
        ("provider.vendor", vendor, {}),
        ("provider.region", region, {"region": region}),
        ("compute.accelerator", accelerator, {"accelerator": accelerator}),
        ("compute.instanceType", instance_type, {"instance_type": instance_type}),
        ("compute.instanceSize", instance_size, {"instance_size": instance_size}),
    ]
    for field, value, narrowing in steps:
        rows = rows.filter(**narrowing)
        if not rows.exists():
            message = f"No instance in the catalog matches {field.split('.')[-1]} '{value}'"
            raise UnknownInstance(message, fields={field: [message]})
    raise UnknownInstance("No instance in the catalog matches this compute", fields={"compute": ["unknown"]})


def quota_limits(*, account: Account) -> dict[str, int]:
    """Limit per accelerator; accelerators without a row take the default for new accounts."""
    limits = {acc: default_limit(acc) for acc in Accelerator.values}
    limits.update(dict(Quota.objects.filter(account=account).values_list("accelerator", "limit")))
    return limits


def quota_request_list(*, account: Account) -> list[QuotaRequest]:
    return list(QuotaRequest.objects.filter(account=account).select_related("requested_by", "decided_by"))


def catalog_list() -> list[InstanceType]:
    return list(InstanceType.objects.all())
