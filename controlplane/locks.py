"""The account row lock every admission and name check of an account serialises on."""

from .models import Account


def account_lock(*, account: Account) -> Account:
    """Lock the account row for the rest of the transaction: every admission for it serialises here."""
    return Account.objects.select_for_update().get(pk=account.pk)
