"""Reads about accounts, roles and tokens. Every account lookup is scoped to the caller."""

import hashlib

from django.contrib.auth.models import AbstractBaseUser

from .errors import Forbidden, NotFound
from .models import ROLE_RANK, Account, ApiToken, Membership, Role


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_get_by_secret(*, secret: str) -> ApiToken | None:
    """The token whose secret this is, with its user, or None. Does not check expiry or revocation."""
    return ApiToken.objects.select_related("user").filter(digest=token_digest(secret)).first()


def account_role(*, user: AbstractBaseUser, account: Account) -> str | None:
    """The user's own role on the account: admin of their personal account, their membership role in an org."""
    if not user.is_authenticated:
        return None
    if account.kind == Account.Kind.USER:
        return Role.ADMIN if account.user_id == user.pk else None
    return Membership.objects.filter(user=user, account=account).values_list("role", flat=True).first()


def effective_role(*, user: AbstractBaseUser, token: ApiToken | None, account: Account) -> str | None:
    """The account role capped by the token's role: a read token never writes, whatever the membership."""
    role = account_role(user=user, account=account)
    if role is None:
        return None
    if token is not None and token.role == ApiToken.TokenRole.READ:
        return Role.READ
    return role


def account_get_for_caller(*, user: AbstractBaseUser, token: ApiToken | None, namespace: str, need: str) -> Account:
    """The account named ``namespace`` if the caller holds at least role ``need`` on it.

    Raises NotFound when the account does not exist or the caller has no role on it at all (another
    tenant's namespace is indistinguishable from a missing one), Forbidden when the role is too low.
    """
    account = Account.objects.filter(slug=namespace).first()
    role = effective_role(user=user, token=token, account=account) if account else None
    if role is None:
        raise NotFound(f"Namespace '{namespace}' not found")
    if ROLE_RANK[role] < ROLE_RANK[need]:
        raise Forbidden(f"Your {role} access to '{namespace}' does not allow this; {need} access is required")
    return account


def user_orgs(*, user: AbstractBaseUser) -> list[tuple[Account, str]]:
    """The organisations the user belongs to, with the role, by slug."""
    memberships = Membership.objects.filter(user=user).select_related("account").order_by("account__slug")
    return [(m.account, m.role) for m in memberships]


def token_list(*, user: AbstractBaseUser) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user=user).order_by("-created_at"))


def account_hub_token(*, account: Account) -> str | None:
    """The account's own Hub token, decrypted (for the reconciler only; no API returns it)."""
    from .encryption import decrypt_json

    return (decrypt_json(account.hub_token_encrypted, {}) or {}).get("token") if account.hub_token_encrypted else None
