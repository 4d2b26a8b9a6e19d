"""Admin for the instance catalog, quota requests (approve / reject) and budgets (saved through the service,
audited). The quota admin shows what endpoints hold, so ``endpoints.admin`` registers it."""

from django.contrib import admin, messages

from .models import Budget, InstanceType, QuotaRequest
from .services import budget_clear, budget_set, quota_request_decide


@admin.register(InstanceType)
class InstanceTypeAdmin(admin.ModelAdmin):
    list_display = ["vendor", "region", "accelerator", "instance_type", "instance_size", "vcpus", "memory_gb",
                    "accelerator_count", "price_per_hour", "status"]
    list_filter = ["vendor", "region", "accelerator", "status"]
    list_editable = ["status"]
    search_fields = ["instance_type", "architecture"]


@admin.register(QuotaRequest)
class QuotaRequestAdmin(admin.ModelAdmin):
    list_display = ["account", "accelerator", "requested_limit", "status", "requested_by", "created_at",
                    "decided_by", "decided_at"]
    list_filter = ["status", "accelerator"]
    search_fields = ["account__slug", "reason"]
    list_select_related = ["account", "requested_by", "decided_by"]
    readonly_fields = ["account", "accelerator", "requested_limit", "reason", "requested_by", "created_at",
                       "status", "decided_by", "decided_at"]
    actions = ["approve", "reject"]

    def has_add_permission(self, request) -> bool:
        return False

    def _decide(self, request, queryset, approve: bool) -> None:
        decided = 0
        for item in queryset.filter(status=QuotaRequest.Status.PENDING):
            quota_request_decide(request_id=item.pk, approve=approve, actor=request.user)
            decided += 1
        self.message_user(request, f"{decided} request(s) {'approved' if approve else 'rejected'}", messages.SUCCESS)

    @admin.action(description="Approve selected requests (sets the quota)")
    def approve(self, request, queryset):
        self._decide(request, queryset, True)

    @admin.action(description="Reject selected requests")
    def reject(self, request, queryset):
        self._decide(request, queryset, False)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["account", "monthly_limit", "notify_percent", "action", "notified_month", "exhausted_month",
                    "updated_at"]
    list_filter = ["action"]
    search_fields = ["account__slug"]
    list_select_related = ["account"]
    autocomplete_fields = ["account"]
    readonly_fields = ["notified_month", "exhausted_month", "updated_at"]

    def save_model(self, request, obj, form, change):
        saved = budget_set(account=obj.account, monthly_limit=obj.monthly_limit, notify_percent=obj.notify_percent,
                           action=obj.action, actor=request.user)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        budget_clear(account=obj.account, actor=request.user)

    def delete_queryset(self, request, queryset):
        for budget in queryset.select_related("account"):
            budget_clear(account=budget.account, actor=request.user)
