"""Writes about users, accounts, memberships and tokens. Each is atomic and audited."""

import re
import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from .errorcodes import Code
from .errors import Conflict, InvalidSpec, NotFound
from .feed import grant_publish_on_commit, token_publish_on_commit, user_tokens_publish_on_commit
from .models import Account, ApiToken, AuditEvent, Membership, Role
from .records import TOKEN_PREFIX
from .selectors import token_digest

HUB_TOKEN_RE = re.compile(r"[!-~]{8,512}")
REGISTRY_HOST_RE = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?")
# An operator's Hub repository grant, lower-cased: ``owner/name``, or ``owner/*`` for every repository of owner.
HUB_REPOSITORY_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,95}/(\*|[a-z0-9][a-z0-9._-]{0,95})")


def audit_record(*, actor: AbstractBaseUser | None, action: str, account: Account | None = None,
                 target: str = "", diff: dict | None = None) -> AuditEvent:
    """Append one audit event. ``diff`` maps field -> [old, new]; it must never hold a secret."""
    return AuditEvent.objects.create(
        account=account,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=getattr(actor, "username", "") or "system",
        action=action,
        target=target,
        diff=diff or {},
    )


def _clean(instance, exclude: list[str] | None = None) -> None:
    """Model validation as an InvalidSpec naming the fields."""
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as exc:
        fields = exc.message_dict
        raise InvalidSpec("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()), fields=fields) from exc


@transaction.atomic
def user_create(*, username: str, email: str = "", is_staff: bool = False, password: str | None = None,
                actor: AbstractBaseUser | None = None) -> AbstractBaseUser:
    """Create a user and their personal account (namespace = username; ``quotas`` gives every new account
    its default quotas in the same transaction).

    Raises Conflict if the username or namespace is taken.
    """
    User = get_user_model()
    if User.objects.filter(username=username).exists() or Account.objects.filter(slug=username).exists():
        raise Conflict(f"The name '{username}' is already taken", code=Code.NAME_TAKEN)
    account = Account(slug=username, kind=Account.Kind.USER)
    _clean(account, exclude=["user"])
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    account.user = user
    account.save()
    audit_record(actor=actor, action="user.create", account=account, target=username,
                 diff={"staff": [None, is_staff]})
    return user


@transaction.atomic
def user_set_active(*, user: AbstractBaseUser, active: bool, actor: AbstractBaseUser | None = None) -> None:
    """(De)activate a user: the API refuses an inactive user's tokens at once, and the endpoint gateway is
    told after commit so protected endpoints refuse them too. Idempotent; audited."""
    if user.is_active == active:
        return
    user.is_active = active
    user.save(update_fields=["is_active"])
    audit_record(actor=actor, action="user.activate" if active else "user.deactivate",
                 account=getattr(user, "personal_account", None), target=user.get_username(),
                 diff={"isActive": [not active, active]})
    user_tokens_publish_on_commit(user)


@transaction.atomic
def org_create(*, slug: str, actor: AbstractBaseUser | None = None) -> Account:
    """Create an organisation account with default quotas. Raises Conflict if the name is taken."""
    if Account.objects.filter(slug=slug).exists() or get_user_model().objects.filter(username=slug).exists():
        raise Conflict(f"The name '{slug}' is already taken", code=Code.NAME_TAKEN)
    account = Account(slug=slug, kind=Account.Kind.ORG)
    _clean(account)
    account.save()
    audit_record(actor=actor, action="org.create", account=account, target=slug)
    return account


@transaction.atomic
def membership_set(*, account: Account, user: AbstractBaseUser, role: str,
                   actor: AbstractBaseUser | None = None) -> Membership:
    """Give ``user`` ``role`` in the organisation (creating or changing the membership). Idempotent."""
    if account.kind != Account.Kind.ORG:
        raise InvalidSpec("Only organisations have members", fields={"account": ["not an organisation"]})
    if role not in Role.values:
        raise InvalidSpec(f"Unknown role '{role}'", fields={"role": [f"one of {', '.join(Role.values)}"]})
    membership, created = Membership.objects.get_or_create(user=user, account=account, defaults={"role": role})
    old = None if created else membership.role
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    if created or old != role:
        audit_record(actor=actor, action="membership.set", account=account, target=user.get_username(),
                     diff={"role": [old, role]})
        grant_publish_on_commit(account=account, user_id=user.pk)
    return membership


@transaction.atomic
def membership_remove(*, account: Account, user: AbstractBaseUser, actor: AbstractBaseUser | None = None) -> None:
    role = Membership.objects.filter(account=account, user=user).values_list("role", flat=True).first()
    deleted, _ = Membership.objects.filter(account=account, user=user).delete()
    if deleted:
        audit_record(actor=actor, action="membership.remove", account=account, target=user.get_username(),
                     diff={"role": [role, None]})
        grant_publish_on_commit(account=account, user_id=user.pk)


@transaction.atomic
def token_create(*, user: AbstractBaseUser, name: str, role: str = ApiToken.TokenRole.WRITE,
                 expires_at: datetime | None = None, parent: ApiToken | None = None,
                 actor: AbstractBaseUser | None = None) -> tuple[ApiToken, str]:
    """Create a token; returns it with its secret, which is never retrievable again.

    ``parent`` is the token the request came with (API calls): the new token expires when it does at the
    latest (no expiry given = its expiry) and is revoked with it. A user holds at most
    ``MAX_TOKENS_PER_USER`` live tokens (Conflict ``token_limit``). Raises InvalidSpec naming the field."""
    if role not in ApiToken.TokenRole.values:
        raise InvalidSpec(f"Unknown token role '{role}'", fields={"role": ["one of read, write"]})
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidSpec("The expiry must be in the future", fields={"expiresAt": ["must be in the future"]})
    if parent is not None and parent.expires_at is not None:
        if expires_at is not None and expires_at > parent.expires_at:
            raise InvalidSpec("A token cannot outlive the token that creates it",
                              fields={"expiresAt": [f"at the latest {parent.expires_at.isoformat()}"]})
        expires_at = expires_at or parent.expires_at
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()  # serialise this user's creates
    live = ApiToken.objects.filter(user=user, revoked_at__isnull=True).exclude(expires_at__lte=now).count()
    if live >= settings.MAX_TOKENS_PER_USER:
        raise Conflict(f"You already have the maximum of {settings.MAX_TOKENS_PER_USER} live tokens; revoke one",
                       code=Code.TOKEN_LIMIT)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            token = ApiToken.objects.create(user=user, name=name, role=role, digest=token_digest(secret),
                                            prefix=secret[:10], expires_at=expires_at, parent=parent)
    except IntegrityError as exc:  # a digest collision: astronomically unlikely, never silently wrong
        raise Conflict("Token generation collided; retry") from exc
    token_publish_on_commit(token)
    account = getattr(user, "personal_account", None)
    audit_record(actor=actor or user, action="token.create", account=account, target=f"{token.prefix}… {name}",
                 diff={"role": [None, role], "expiresAt": [None, expires_at.isoformat() if expires_at else None]})
    return token, secret


@transaction.atomic
def token_revoke(*, user: AbstractBaseUser, token_id: int, actor: AbstractBaseUser | None = None) -> ApiToken:
    """Revoke one of ``user``'s tokens and every token created with it (children, theirs, ...).
    Idempotent; another user's token is NotFound."""
    token = ApiToken.objects.select_for_update().filter(user=user, pk=token_id).first()
    if token is None:
        raise NotFound("Token not found")
    now, pending = timezone.now(), [token]
    while pending:
        current = pending.pop()
        if current.revoked_at is None:
            current.revoked_at = now
            current.save(update_fields=["revoked_at"])
            token_publish_on_commit(current)
            audit_record(actor=actor or user, action="token.revoke", account=getattr(user, "personal_account", None),
                         target=f"{current.prefix}… {current.name}", diff={"revokedAt": [None, now.isoformat()]})
        pending.extend(ApiToken.objects.select_for_update().filter(parent=current))
    token.refresh_from_db()
    return token


def token_touch(*, token: ApiToken) -> None:
    """Record use, at most once per TOKEN_LAST_USED_RESOLUTION_SECONDS so reads don't all become writes."""
    now = timezone.now()
    resolution = settings.TOKEN_LAST_USED_RESOLUTION_SECONDS
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= resolution:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


@transaction.atomic
def account_hub_token_set(*, account: Account, token: str | None, actor: AbstractBaseUser | None = None) -> None:
    """Store (encrypted) or clear the account's own Hub token. Never returned by any read; audited without
    its value. Its endpoints pick it up on their next reconcile pass."""
    from .encryption import encrypt_json

    if token is not None and not HUB_TOKEN_RE.fullmatch(token):
        raise InvalidSpec("A Hub token is 8 to 512 printable characters without spaces",
                          fields={"token": ["not a Hub token"]})
    had = bool(account.hub_token_encrypted)
    account.hub_token_encrypted = encrypt_json({"token": token}) if token else ""
    account.save(update_fields=["hub_token_encrypted"])
    audit_record(actor=actor, action="account.hub_token", account=account, target=account.slug,
                 diff={"hubToken": ["(set)" if had else None, "(set)" if token else None]})


def _account_grant(account: Account, field: str, value: str, *, granted: bool, actor, action: str,
                   diff_key: str) -> list[str]:
    """Add ``value`` to (or remove it from) the account's grant list ``field`` under the account row's lock;
    audited when the list changed. Returns the list, sorted as stored."""
    account = Account.objects.select_for_update().get(pk=account.pk)
    before = list(getattr(account, field))
    after = sorted(set(before) | {value}) if granted else [v for v in before if v != value]
    if after != before:
        setattr(account, field, after)
        account.save(update_fields=[field])
        audit_record(actor=actor, action=action, account=account, target=value, diff={diff_key: [before, after]})
    return after


@transaction.atomic
def account_registry_grant(*, account: Account, server: str, granted: bool = True,
                           actor: AbstractBaseUser | None = None) -> list[str]:
    """Let (or stop letting) the cluster's own cloud identity pull from registry ``server`` for ``account``
    (operators only). Idempotent; audited; returns the account's granted registries."""
    server = server.strip().lower()
    if not REGISTRY_HOST_RE.fullmatch(server):
        raise InvalidSpec(f"'{server[:64]}' is not a registry host", fields={"server": ["a host name, e.g. "
                                                                                      "123456789012.dkr.ecr.us-east-1.amazonaws.com"]})
    return _account_grant(account, "granted_registries", server, granted=granted, actor=actor,
                          action="account.registry_grant" if granted else "account.registry_revoke",
                          diff_key="grantedRegistries")


@transaction.atomic
def account_hub_repository_grant(*, account: Account, repository: str, granted: bool = True,
                                 actor: AbstractBaseUser | None = None) -> list[str]:
    """Let (or stop letting) the platform's ``HF_HUB_TOKEN`` read the private or gated Hub ``repository``
    (``owner/name``, or ``owner/*``: every repository of ``owner``) for ``account``'s endpoints (operators
    only; no tenant API reaches this). Case-insensitive, idempotent, audited; returns the account's list."""
    repository = repository.strip().lower()
    if not HUB_REPOSITORY_RE.fullmatch(repository):
        raise InvalidSpec(f"'{repository[:64]}' is not a Hub repository grant",
                          fields={"repository": ["owner/name, or owner/* for all of owner's repositories"]})
    return _account_grant(account, "granted_repositories", repository, granted=granted, actor=actor,
                          action="account.hub_repository_grant" if granted else "account.hub_repository_revoke",
                          diff_key="grantedRepositories")
