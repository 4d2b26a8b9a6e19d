"""The instance-type catalog, per-account quotas and quota-increase requests."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.models import Account


class Accelerator(models.TextChoices):
    CPU = "cpu", "cpu"
    GPU = "gpu", "gpu"
    NEURON = "neuron", "neuron"


class InstanceType(models.Model):
    """One orderable compute shape in one (vendor, region), with how Kubernetes schedules it.

    A replica of this instance consumes ``quota_units`` of the account's quota for ``accelerator``:
    vCPUs for cpu, devices for gpu and neuron.
    """

    class Status(models.TextChoices):
        AVAILABLE = "available", "available"
        LOW_AVAILABILITY = "low_availability", "low availability"
        NOT_AVAILABLE = "not_available", "not available"
        RESERVED = "reserved", "reserved"
        DEPRECATED = "deprecated", "deprecated"

    vendor = models.CharField(max_length=32)
    region = models.CharField(max_length=32)
    region_label = models.CharField(max_length=64, blank=True)
    accelerator = models.CharField(max_length=8, choices=Accelerator.choices)
    instance_type = models.CharField(max_length=64)
    instance_size = models.CharField(max_length=16)
    vcpus = models.PositiveIntegerField()
    memory_gb = models.FloatField()
    accelerator_count = models.PositiveIntegerField(default=0)
    accelerator_memory_gb = models.FloatField(null=True, blank=True, help_text="Total over all accelerators")
    architecture = models.CharField(max_length=64)
    price_per_hour = models.DecimalField(max_digits=10, decimal_places=4)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AVAILABLE)
    # Scheduling on Kubernetes.
    node_selector = models.JSONField(default=dict, blank=True)
    tolerations = models.JSONField(default=list, blank=True)
    accelerator_resource = models.CharField(
        max_length=64, blank=True, help_text="Extended resource name, e.g. nvidia.com/gpu"
    )
    cpu_request = models.CharField(max_length=16, help_text="Kubernetes quantity, e.g. 1500m")
    memory_request = models.CharField(max_length=16, help_text="Kubernetes quantity, e.g. 3Gi")
    cpu_limit = models.CharField(max_length=16, blank=True)
    memory_limit = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["vendor", "region", "accelerator", "instance_type", "vcpus", "accelerator_count"]
        constraints = [
            models.UniqueConstraint(
                fields=["vendor", "region", "accelerator", "instance_type", "instance_size"], name="instance_unique"
            )
        ]

    def __str__(self) -> str:
        return self.compute_id

    @property
    def compute_id(self) -> str:
        return f"{self.vendor}-{self.region}-{self.instance_type}-{self.instance_size}"

    @property
    def quota_units(self) -> int:
        return self.vcpus if self.accelerator == Accelerator.CPU else self.accelerator_count

    @property
    def orderable(self) -> bool:
        return self.status not in (self.Status.DEPRECATED, self.Status.NOT_AVAILABLE)


class Quota(models.Model):
    """An account's capacity limit for one accelerator, in units (vCPUs for cpu, devices otherwise)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="quotas")
    accelerator = models.CharField(max_length=8, choices=Accelerator.choices)
    limit = models.PositiveIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account__slug", "accelerator"]
        constraints = [models.UniqueConstraint(fields=["account", "accelerator"], name="quota_unique")]

    def __str__(self) -> str:
        return f"{self.account} {self.accelerator}: {self.limit}"


class QuotaRequest(models.Model):
    """An account's request for a higher limit, decided by an operator in the admin."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="quota_requests")
    accelerator = models.CharField(max_length=8, choices=Accelerator.choices)
    requested_limit = models.PositiveIntegerField()
    reason = models.TextField(max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.account} {self.accelerator} → {self.requested_limit} ({self.status})"


class Budget(models.Model):
    """An account's monthly spending budget (USD) and what happens as its month-to-date cost crosses it.

    At ``notify_percent`` the account is told (audit record, webhook); at 100 % ``action`` applies until the
    month ends or the budget is raised: ``notify`` does nothing more, ``pause`` pauses every endpoint not
    tagged ``essential``, ``refuse`` refuses admissions that would hold more (creates, resumes, raised
    ``maxReplica``). ``notified_month`` / ``exhausted_month`` (the month's first day) record that the
    crossing was acted on, so each happens once a month.
    """

    class Action(models.TextChoices):
        NOTIFY = "notify", "notify only"
        PAUSE = "pause", "pause non-essential endpoints"
        REFUSE = "refuse", "refuse scale-ups"

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="budget")
    monthly_limit = models.DecimalField(max_digits=12, decimal_places=2)
    notify_percent = models.PositiveSmallIntegerField(default=80)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.NOTIFY)
    notified_month = models.DateField(null=True, blank=True, editable=False)
    exhausted_month = models.DateField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(monthly_limit__gt=0), name="budget_limit_positive"),
            models.CheckConstraint(condition=models.Q(notify_percent__gte=1, notify_percent__lte=100),
                                   name="budget_notify_percent_range"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.monthly_limit} USD/month ({self.action})"
