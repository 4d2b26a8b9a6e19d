"""``manage.py grant_repository ACCOUNT REPOSITORY [--revoke]``: prints the account's granted repositories."""

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import DomainError
from controlplane.models import Account
from controlplane.services import account_hub_repository_grant


class Command(BaseCommand):
    help = ("Let the platform's Hub token (HF_HUB_TOKEN) read a private or gated Hub repository for one account "
            "(owner/name, or owner/* for all of owner's repositories), or stop it with --revoke. Prints the "
            "account's granted repositories, one per line.")

    def add_arguments(self, parser):
        parser.add_argument("account")
        parser.add_argument("repository", help="e.g. acme/weights or acme/*")
        parser.add_argument("--revoke", action="store_true")

    def handle(self, *args, account, repository, revoke, **options):
        found = Account.objects.filter(slug=account).first()
        if found is None:
            raise CommandError(f"No account '{account}'")
        try:
            granted = account_hub_repository_grant(account=found, repository=repository, granted=not revoke)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write("\n".join(granted))
