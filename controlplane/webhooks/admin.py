"""Admin for webhook subscriptions (the secret never shown; changes through the services) and their
deliveries (read-only, attempts inline, a "redeliver" action through the service)."""

from django.contrib import admin, messages

from ..errors import DomainError
from ..models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from .services import webhook_delete, webhook_redeliver, webhook_update


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["id", "account", "url", "events", "enabled", "consecutive_failures", "created_at"]
    list_select_related = ["account"]
    list_filter = ["enabled"]
    search_fields = ["account__slug", "url"]
    fields = ["account", "url", "events", "description", "enabled", "disabled_reason", "consecutive_failures",
              "created_by", "created_at", "updated_at"]
    readonly_fields = ["account", "url", "events", "description", "disabled_reason", "consecutive_failures",
                       "created_by", "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False  # tenants subscribe through the API (the secret is shown to them once)

    def save_model(self, request, obj, form, change):
        if "enabled" in form.changed_data:
            webhook_update(account=obj.account, webhook_id=obj.pk, changes={"enabled": obj.enabled}, actor=request.user)

    def delete_model(self, request, obj):
        webhook_delete(account=obj.account, webhook_id=obj.pk, actor=request.user)

    def delete_queryset(self, request, queryset):
        for subscription in queryset.select_related("account"):
            webhook_delete(account=subscription.account, webhook_id=subscription.pk, actor=request.user)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["attempted_at", "outcome", "status_code", "duration_ms", "error", "response_excerpt", "manual"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["message_id", "event_type", "subscription", "status", "attempt_count", "next_attempt_at",
                    "created_at"]
    list_select_related = ["subscription"]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id", "subscription__account__slug", "subscription__url"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Redeliver selected deliveries")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            try:
                webhook_redeliver(account=None, delivery_id=delivery.pk, actor=request.user)
            except DomainError as exc:  # its subscription disabled, say: reported, never a 500
                self.message_user(request, f"{delivery.message_id}: {exc.message}", messages.WARNING)
