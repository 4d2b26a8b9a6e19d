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


class WebhookSubscription(models.Model):
    """An account's webhook: where its events are POSTed, which kinds, and the secret that signs them.

    The secret (``whsec_...``) is stored encrypted (it must be read back to sign) and shown only in the
    answer that creates or rotates it. ``events`` lists event types; ``["*"]`` means every type.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=2048)
    events = models.JSONField(default=list)
    description = models.CharField(max_length=256, blank=True, default="")
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=256, blank=True, default="")
    # Failed attempts in a row (any delivery); a success resets it. Reaching WEBHOOK_DISABLE_AFTER_FAILURES
    # disables the subscription.
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account_id", "id"]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.url[:80]}"


class WebhookDelivery(models.Model):
    """One event for one subscription (the transactional outbox row): written in the transaction of the
    change it reports, sent by a worker after commit, retried until it succeeds or its window ends.

    ``body`` is the exact JSON sent (every attempt signs the same bytes); ``message_id`` is the
    ``webhook-id`` header, the same on every attempt so receivers can deduplicate.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed (gave up)"

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=64, unique=True, editable=False)
    event_type = models.CharField(max_length=64)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    # When a worker may next attempt it (a claimed attempt moves it ahead by the lease); None once finished.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Failed attempts are retried until then (WEBHOOK_RETRY_WINDOW_SECONDS after the event, or after a
    # manual redelivery); the first failure after it gives the delivery up.
    retry_until = models.DateTimeField()
    # The next attempt is one someone asked for (a redelivery): its log line says so.
    manual = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["next_attempt_at"], name="webhook_delivery_due",
                                condition=models.Q(status="pending"))]

    def __str__(self) -> str:
        return f"{self.message_id} {self.event_type} ({self.status})"


class WebhookAttempt(models.Model):
    """One try at sending a delivery: what the receiver answered, or why nothing was sent."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded", "succeeded (2xx)"
        HTTP_ERROR = "http_error", "answered non-2xx"
        TIMEOUT = "timeout", "timed out"
        NETWORK_ERROR = "network_error", "connection failed"
        REFUSED = "refused", "refused (address not allowed)"

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    attempted_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=512, blank=True, default="")
    response_excerpt = models.CharField(max_length=1024, blank=True, default="")
    manual = models.BooleanField(default=False, help_text="A redelivery someone asked for")

    class Meta:
        ordering = ["attempted_at", "id"]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.outcome} {self.status_code or ''}"
