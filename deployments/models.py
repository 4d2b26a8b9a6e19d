"""The cluster registry: where each (vendor, region) runs its endpoints, and what its last probe saw."""

from django.db import models
from django.utils import timezone


class Cluster(models.Model):
    """A Kubernetes cluster serving one (vendor, region). Its kubeconfig is stored encrypted."""

    name = models.SlugField(max_length=64, unique=True)
    vendor = models.CharField(max_length=32)
    region = models.CharField(max_length=32)
    kubeconfig_encrypted = models.TextField(blank=True, default="", editable=False)
    context = models.CharField(max_length=128, blank=True)
    in_cluster = models.BooleanField(default=False, help_text="Use the pod's service account instead of a kubeconfig")
    namespace_prefix = models.CharField(max_length=20, default="ie-")
    ingress_domain = models.CharField(max_length=253, blank=True, help_text="e.g. endpoints.example.com")
    endpoint_url_template = models.CharField(max_length=256, default="https://{host}.{domain}")
    service_url_template = models.CharField(
        max_length=256, default="http://{service}.{namespace}.svc.cluster.local:{port}")
    enabled = models.BooleanField(default=True)
    api_server = models.CharField(max_length=512, blank=True, editable=False,
                                  help_text="The API server URL, from the kubeconfig (in-cluster: the pod's own)")
    simulated = models.BooleanField(
        default=False, help_text="Its nodes are simulated (the local development cluster): endpoints reach running, "
                                 "but no container runs to answer their requests")
    # AWS access for PrivateLink and ECR pulls (vendor aws): keys (stored encrypted), a profile of the
    # worker's AWS config, or the worker's ambient credentials (IRSA, instance role). None set = no AWS.
    aws_credentials_encrypted = models.TextField(blank=True, default="", editable=False)
    aws_profile = models.CharField(max_length=64, blank=True)
    aws_ambient = models.BooleanField(default=False, help_text="Use the worker's own AWS credentials")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # ---- what the last probe saw (deployments.probe; written without touching updated_at, which keys the
    # cached client)
    contacted_at = models.DateTimeField(null=True, blank=True, editable=False,
                                        help_text="Last successful contact with the API server")
    contact_error = models.CharField(max_length=512, blank=True, editable=False,
                                     help_text="Why the last probe failed (blank: it succeeded)")
    kubernetes_version = models.CharField(max_length=64, blank=True, editable=False)
    capacity = models.JSONField(default=dict, blank=True, editable=False,
                                help_text="Node count and allocatable cpu / memory / gpus over ready nodes")

    class Meta:
        ordering = ["vendor", "region", "name"]
        constraints = [models.UniqueConstraint(fields=["vendor", "region"], condition=models.Q(enabled=True),
                                               name="one_enabled_cluster_per_region")]

    def __str__(self) -> str:
        return f"{self.name} ({self.vendor}/{self.region})"


class RegistryCredential(models.Model):
    """A short-lived pull credential for a cloud registry (ECR), fetched by the worker and shared by every
    endpoint of the cluster pulling from that registry. The password is stored encrypted."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="registry_credentials")
    server = models.CharField(max_length=253)
    username = models.CharField(max_length=64)
    password_encrypted = models.TextField(editable=False)
    fetched_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "server"], name="registry_credential_unique")]

    def __str__(self) -> str:
        return f"{self.server} on {self.cluster.name}"

