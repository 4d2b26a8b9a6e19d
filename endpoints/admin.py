"""Admin for endpoints (filter by state, account and accelerator; status read-only; events and spec revisions
inline) and for
quotas, with what the account's endpoints hold."""

from django.contrib import admin, messages
from django.db.models import OuterRef

from controlplane.errors import DomainError
from quotas.models import Quota
from quotas.services import quota_set

from . import catalog_admin  # noqa: F401 (registers the inference catalog's admin)
from .models import CostHour, Endpoint, EndpointEvent, EndpointRevision
from .quota import held_units
from .services import endpoint_delete


class EndpointEventInline(admin.TabularInline):
    model = EndpointEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "actor_name", "from_state", "to_state", "message", "diff", "generation"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class EndpointRevisionInline(admin.TabularInline):
    """The spec history, read-only (rollbacks go through the API: admitted and audited). The per-value
    secret digests are left out: they are for the rollback's comparison, not for reading."""

    model = EndpointRevision
    extra = 0
    can_delete = False
    fields = ["generation", "outcome", "changed_by_name", "changed_at", "applied_at", "served_at", "pinned_revision",
              "image", "secret_keys", "secrets_version", "rollback_of", "rolled_back_from", "spec"]
    readonly_fields = fields
    ordering = ["-generation"]
    verbose_name = "spec revision"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """Operators inspect endpoints here; spec changes go through the API so they are admitted and audited."""

    list_display = ["name", "account", "state", "type", "instance", "min_replica", "max_replica", "updated_at"]
    list_filter = ["state", "instance__accelerator", "type", "account"]
    search_fields = ["name", "account__slug", "repository"]
    list_select_related = ["account", "instance"]
    exclude = ["secrets_encrypted"]
    readonly_fields = [f.name for f in Endpoint._meta.fields if f.name not in ("id", "secrets_encrypted")]
    inlines = [EndpointRevisionInline, EndpointEventInline]

    def has_add_permission(self, request) -> bool:
        return False

    # Deleting (one, or the bulk action) goes through the service, as the API's delete does: audited, the
    # route withdrawn from the gateway, and the cluster's objects removed by the reconciler before the row.
    def delete_model(self, request, obj):
        self._delete(request, obj)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset.select_related("account"):
            self._delete(request, endpoint)

    def _delete(self, request, endpoint: Endpoint) -> None:
        try:
            endpoint_delete(account=endpoint.account, name=endpoint.name, actor=request.user)
        except DomainError as exc:  # gone meanwhile, say: report it, never a 500
            self.message_user(request, f"{endpoint.account.slug}/{endpoint.name}: {exc}", messages.WARNING)


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ["account", "accelerator", "limit", "usage", "updated_at"]
    list_filter = ["accelerator"]
    search_fields = ["account__slug"]
    list_select_related = ["account"]
    readonly_fields = ["usage"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            held=held_units(account=OuterRef("account"), accelerator=OuterRef("accelerator")))

    @admin.display(description="in use", ordering="held")
    def usage(self, obj: Quota) -> int:
        return obj.held

    def save_model(self, request, obj, form, change):
        quota_set(account=obj.account, accelerator=obj.accelerator, limit=obj.limit, actor=request.user)


@admin.register(CostHour)
class CostHourAdmin(admin.ModelAdmin):
    """The ledger, read-only: it is accrued from observed replicas, never edited (the console's cost page
    charts it per account)."""

    list_display = ["hour", "account", "endpoint_name", "replica_seconds", "cost"]
    list_filter = ["hour"]
    search_fields = ["account__slug", "endpoint_name"]
    list_select_related = ["account"]
    date_hierarchy = "hour"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
