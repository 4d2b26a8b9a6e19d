"""Deletions the endpoint gateway must hear of, however they happen (the services, the admin, the ORM, a
cascade from a deleted user or account): each deleted token or membership is published as absent after
commit, so the gateway stops honouring it within milliseconds instead of when its Redis record expires.

A deleted user is covered through the cascade: with these receivers connected Django deletes the user's
tokens and memberships row by row and sends ``post_delete`` for each (it fast-deletes only rows nobody
listens for).
"""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .feed import grant_publish, token_publish_on_commit
from .models import ApiToken, Membership


@receiver(post_delete, sender=ApiToken, dispatch_uid="controlplane.token_deleted")
def token_deleted(sender, instance: ApiToken, **_kwargs) -> None:
    token_publish_on_commit(instance)


@receiver(post_delete, sender=Membership, dispatch_uid="controlplane.membership_deleted")
def membership_deleted(sender, instance: Membership, **_kwargs) -> None:
    # Ids only: the account may be going in the same cascade.
    account_id, user_id = instance.account_id, instance.user_id
    transaction.on_commit(lambda: grant_publish(account_id=account_id, user_id=user_id))
