"""Admin for the cluster registry (kubeconfigs are never shown)."""

from django.contrib import admin

from .models import Cluster


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "vendor", "region", "in_cluster", "ingress_domain", "enabled", "updated_at"]
    list_filter = ["vendor", "region", "enabled"]
    search_fields = ["name"]
    exclude = ["kubeconfig_encrypted"]
