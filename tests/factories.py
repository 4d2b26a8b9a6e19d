"""Factories for the suite: real rows through the real services."""

import itertools
from datetime import timedelta

from django.utils import timezone

from controlplane.services import membership_set, org_create, token_create, user_create

_seq = itertools.count(1)


def make_user(username: str | None = None, **kwargs):
    return user_create(username=username or f"user{next(_seq)}", **kwargs)


def make_org(slug: str | None = None, members: dict | None = None):
    account = org_create(slug=slug or f"org{next(_seq)}")
    for user, role in (members or {}).items():
        membership_set(account=account, user=user, role=role)
    return account


def make_token(user, role: str = "write", *, expired: bool = False, revoked: bool = False) -> str:
    token, secret = token_create(user=user, name=f"t{next(_seq)}", role=role)
    if expired:
        type(token).objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    if revoked:
        type(token).objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    if expired or revoked:  # as the services do: the endpoint gateway hears of it after commit
        from controlplane.feed import token_publish_on_commit

        token_publish_on_commit(token)
    return secret


def endpoint_spec(name: str = "my-endpoint", **overrides) -> dict:
    """The body ``huggingface_hub`` 2.4.0 sends for a default create, with overrides merged."""
    from endpoints.spec import deep_merge

    spec = {
        "compute": {"accelerator": "cpu", "instanceSize": "x2", "instanceType": "intel-spr",
                    "scaling": {"maxReplica": 1, "minReplica": 1, "scaleToZeroTimeout": None}},
        "model": {"framework": "pytorch", "repository": "gpt2", "revision": None, "image": {"huggingface": {}}},
        "name": name, "provider": {"region": "us-east-1", "vendor": "aws"}, "type": "authenticated",
    }
    return deep_merge(spec, overrides)
