"""Admin for the cluster registry (kubeconfigs, AWS keys and registry passwords are never shown). Edits go
through ``cluster_update`` (validated, audited); registering a cluster is ``manage.py register_cluster``."""

from django.contrib import admin, messages

from controlplane.errors import DomainError

from .models import Cluster, RegistryCredential
from .services import EDITABLE, cluster_update

# The admin's front page leads with the operator console (deployments.console_views).
admin.site.index_template = "console/admin_index.html"
admin.site.site_header = admin.site.site_title = "Inference Endpoints control plane"


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "vendor", "region", "in_cluster", "ingress_domain", "enabled", "kubernetes_version",
                    "contacted_at", "updated_at"]
    list_filter = ["vendor", "region", "enabled"]
    search_fields = ["name"]
    PROBED = ["contacted_at", "contact_error", "kubernetes_version", "capacity"]  # the probe's, never edited
    fields = [*EDITABLE, "in_cluster", "api_server", *PROBED, "created_at", "updated_at"]
    readonly_fields = ["in_cluster", "api_server", *PROBED, "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False  # a cluster comes with its kubeconfig: manage.py register_cluster

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in EDITABLE}
        try:
            cluster_update(cluster=Cluster.objects.get(pk=obj.pk), changes=changes, actor=request.user)
        except DomainError as exc:
            self.message_user(request, f"Not saved: {exc.message}", messages.ERROR)


@admin.register(RegistryCredential)
class RegistryCredentialAdmin(admin.ModelAdmin):
    """ECR pull credentials the worker fetched; deleting one makes the next reconcile fetch it again."""

    list_display = ["server", "cluster", "username", "fetched_at", "expires_at"]
    list_filter = ["cluster"]
    exclude = ["password_encrypted"]
    readonly_fields = ["cluster", "server", "username", "fetched_at", "expires_at"]

    def has_add_permission(self, request) -> bool:
        return False
