"""Accounts (users' personal namespaces and organisations), memberships, API tokens and the audit log."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from .names import ACCOUNT_NAME_PATTERN
from .validators import AccountNameValidator, FullMatchValidator


class Role(models.TextChoices):
    READ = "read", "read"
    WRITE = "write", "write"
    ADMIN = "admin", "admin"


ROLE_RANK = {Role.READ: 1, Role.WRITE: 2, Role.ADMIN: 3}


class Account(models.Model):
    """A namespace that owns endpoints and quotas: a user's personal account or an organisation."""

    class Kind(models.TextChoices):
        USER = "user", "user"
        ORG = "org", "organisation"

    slug = models.CharField(max_length=96, unique=True, validators=[
        FullMatchValidator(ACCOUNT_NAME_PATTERN, "1 to 40 lowercase letters, digits and '-', not at either end"),
        AccountNameValidator()])
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Set for personal accounts only: the user whose namespace this is.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="personal_account"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The account's own Hub token (encrypted): what its endpoints resolve and download private or gated
    # repositories with. The platform's token never serves a tenant.
    hub_token_encrypted = models.TextField(blank=True, default="", editable=False)
    # Cloud registries (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com) an operator lets the cluster's own
    # cloud identity pull from for this account; any other private registry needs the tenant's credentials.
    granted_registries = models.JSONField(default=list, blank=True)
    # Private or gated Hub repositories (``owner/name``, or ``owner/*`` for all of an owner's) the platform's
    # HF_HUB_TOKEN may read for this account, set by an operator only; without an entry it reads public,
    # ungated repositories only.
    granted_repositories = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind="user", user__isnull=False) | models.Q(kind="org", user__isnull=True),
                name="account_user_iff_personal",
            )
        ]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's role in an organisation account."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.READ)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "account"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} ({self.role})"


class ApiToken(models.Model):
    """A bearer token. Only the SHA-256 of the secret is stored; the secret is shown once at creation."""

    class TokenRole(models.TextChoices):
        READ = "read", "read"
        WRITE = "write", "write"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    role = models.CharField(max_length=8, choices=TokenRole.choices, default=TokenRole.WRITE)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, for recognising a token")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The token that created this one through the API: a child never outlives it (expiry, revocation).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
                               editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class AuditEvent(models.Model):
    """Append-only record of a change to a quota, token or membership: who, when, what, field diff.

    Endpoint changes have their own log (``endpoints.EndpointEvent``) so it can go with the endpoint.
    """

    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200, blank=True)
    diff = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"
