"""Admin for the cluster registry (kubeconfigs, AWS keys and registry passwords are never shown)."""

from django.contrib import admin
from django.utils import timezone

from .models import Cluster, RegistryCredential


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "vendor", "region", "in_cluster", "ingress_domain", "enabled", "updated_at"]
    list_filter = ["vendor", "region", "enabled"]
    search_fields = ["name"]
    exclude = ["kubeconfig_encrypted", "aws_credentials_encrypted"]

    def save_model(self, request, obj, form, change):
        obj.updated_at = timezone.now()  # workers rebuild their cached client for this cluster
        super().save_model(request, obj, form, change)


@admin.register(RegistryCredential)
class RegistryCredentialAdmin(admin.ModelAdmin):
    """ECR pull credentials the worker fetched; deleting one makes the next reconcile fetch it again."""

    list_display = ["server", "cluster", "username", "fetched_at", "expires_at"]
    list_filter = ["cluster"]
    exclude = ["password_encrypted"]
    readonly_fields = ["cluster", "server", "username", "fetched_at", "expires_at"]

    def has_add_permission(self, request) -> bool:
        return False
