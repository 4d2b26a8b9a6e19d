"""Admin for accounts, memberships, tokens (never the secret) and the audit log."""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction

from .loginlimit import RateLimitedAdminAuthenticationForm
from .models import Account, ApiToken, AuditEvent, Membership
from .services import (
    HUB_REPOSITORY_RE,
    HUB_TOKEN_RE,
    REGISTRY_HOST_RE,
    account_hub_repository_grant,
    account_hub_token_set,
    account_registry_grant,
    membership_remove,
    membership_set,
    user_set_active,
)

admin.site.login_form = RateLimitedAdminAuthenticationForm


def _membership_move(request, membership: Membership) -> Membership:
    """Save an edited membership through the services. When its account or user changed, the old pair is
    removed first (audited, told to the gateway): reassigning moves a membership, it never adds a second."""
    with transaction.atomic():
        if membership.pk is not None:
            before = Membership.objects.select_related("account", "user").get(pk=membership.pk)
            if (before.account_id, before.user_id) != (membership.account_id, membership.user_id):
                membership_remove(account=before.account, user=before.user, actor=request.user)
        saved = membership_set(account=membership.account, user=membership.user, role=membership.role,
                               actor=request.user)
    membership.pk = saved.pk  # the admin's messages and log then name the row that holds the membership
    return saved


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account", "user")


class AccountForm(forms.ModelForm):
    """The account, its own Hub token (write-only: never shown, blank keeps it), the cloud registries the
    platform's identity may pull from for it and the private Hub repositories the platform's Hub token may
    read for it, saved through the services."""

    hub_token = forms.CharField(required=False, strip=False, widget=forms.PasswordInput(render_value=False),
                                help_text="Write-only: leave blank to keep the current token.")
    clear_hub_token = forms.BooleanField(required=False, help_text="Remove the account's Hub token.")
    registries = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                 help_text="Registry hosts the platform's cloud identity pulls from for this "
                                           "account, one per line (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com).")
    repositories = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Private or gated Hub repositories the platform's Hub token may read for this account, one per "
                  "line: owner/name, or owner/* for all of an owner's repositories.")

    class Meta:
        model = Account
        fields = ["slug", "kind", "user"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["registries"].initial = "\n".join(self.instance.granted_registries)
            self.fields["repositories"].initial = "\n".join(self.instance.granted_repositories)
            self.fields["hub_token"].help_text += " A token is set." if self.instance.hub_token_encrypted else ""

    def clean_hub_token(self):
        token = self.cleaned_data["hub_token"]
        if token and not HUB_TOKEN_RE.fullmatch(token):
            raise forms.ValidationError("A Hub token is 8 to 512 printable characters without spaces.")
        return token

    def clean_registries(self):
        hosts = sorted({line.strip().lower() for line in self.cleaned_data["registries"].splitlines() if line.strip()})
        bad = [host for host in hosts if not REGISTRY_HOST_RE.fullmatch(host)]
        if bad:
            raise forms.ValidationError(f"Not a registry host: {bad[0][:64]}")
        return hosts

    def clean_repositories(self):
        lines = self.cleaned_data["repositories"].splitlines()
        grants = sorted({line.strip().lower() for line in lines if line.strip()})
        bad = [grant for grant in grants if not HUB_REPOSITORY_RE.fullmatch(grant)]
        if bad:
            raise forms.ValidationError(f"Not a Hub repository (owner/name or owner/*): {bad[0][:64]}")
        return grants


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountForm
    list_display = ["slug", "kind", "user", "created_at"]
    list_select_related = ["user"]
    list_filter = ["kind"]
    search_fields = ["slug"]
    inlines = [MembershipInline]
    readonly_fields = ["created_at"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        data = form.cleaned_data
        if data.get("hub_token"):
            account_hub_token_set(account=obj, token=data["hub_token"], actor=request.user)
        elif data.get("clear_hub_token"):
            account_hub_token_set(account=obj, token=None, actor=request.user)
        wanted = set(data.get("registries") or [])
        for server in sorted(wanted ^ set(obj.granted_registries)):
            obj.granted_registries = account_registry_grant(account=obj, server=server, granted=server in wanted,
                                                            actor=request.user)
        wanted = set(data.get("repositories") or [])
        for repository in sorted(wanted ^ set(obj.granted_repositories)):
            obj.granted_repositories = account_hub_repository_grant(account=obj, repository=repository,
                                                                granted=repository in wanted, actor=request.user)

    def get_readonly_fields(self, request, obj=None):
        # A slug names the account's Kubernetes namespace and its endpoints' hosts: fixed once created.
        return ["slug", "kind", "user", "created_at"] if obj else self.readonly_fields

    def get_inlines(self, request, obj):
        # Only organisations have members (membership_set refuses the others).
        return self.inlines if obj is not None and obj.kind == Account.Kind.ORG else []

    def save_formset(self, request, form, formset, change):
        """Membership rows edited inline go through the services (audited, told to the gateway)."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        for membership in formset.save(commit=False):
            _membership_move(request, membership)
        for membership in formset.deleted_objects:
            membership_remove(account=membership.account, user=membership.user, actor=request.user)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Saved through the services, so every change is audited and reaches the endpoint gateway."""

    list_display = ["account", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["account__slug", "user__username"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "account":  # only organisations have members (membership_set refuses the others)
            kwargs["queryset"] = Account.objects.filter(kind=Account.Kind.ORG)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        _membership_move(request, obj)

    def delete_model(self, request, obj):
        membership_remove(account=obj.account, user=obj.user, actor=request.user)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("account", "user"):
            membership_remove(account=membership.account, user=membership.user, actor=request.user)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created by their owners or ``create_token``; here they can be inspected and revoked."""

    list_display = ["prefix", "name", "user", "role", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["role"]
    search_fields = ["name", "prefix", "user__username"]
    fields = ["user", "name", "role", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
    # All read-only, no deletes: revocation goes through the action (audited, told to the gateway).
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        from .services import token_revoke

        for token in queryset:
            token_revoke(user=token.user, token_id=token.pk, actor=request.user)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "account", "target"]
    list_select_related = ["account"]
    list_filter = ["action"]
    search_fields = ["actor_name", "target", "account__slug"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class UserAdmin(DjangoUserAdmin):
    """Django's user admin; (de)activation goes through ``user_set_active`` (audited, and the endpoint gateway
    told, so the user's tokens stop opening protected endpoints at once, as they stop opening the API).
    Deletions reach the gateway however they happen: controlplane.signals."""

    def save_model(self, request, obj, form, change):
        if not (change and "is_active" in form.changed_data):
            return super().save_model(request, obj, form, change)
        active, obj.is_active = obj.is_active, not obj.is_active  # the other fields first, as they were
        super().save_model(request, obj, form, change)
        user_set_active(user=obj, active=active, actor=request.user)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserAdmin)


from .webhooks import admin as _webhooks_admin  # noqa: E402, F401  (registers the webhook admins)
