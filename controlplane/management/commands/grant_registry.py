"""``manage.py grant_registry ACCOUNT SERVER [--revoke]``: prints the account's granted registries."""

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import DomainError
from controlplane.models import Account
from controlplane.services import account_registry_grant


class Command(BaseCommand):
    help = ("Let the cluster's own cloud identity (e.g. its ECR access) pull from a registry for one account, "
            "or stop it with --revoke. Prints the account's granted registries, one per line.")

    def add_arguments(self, parser):
        parser.add_argument("account")
        parser.add_argument("server", help="e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com")
        parser.add_argument("--revoke", action="store_true")

    def handle(self, *args, account, server, revoke, **options):
        found = Account.objects.filter(slug=account).first()
        if found is None:
            raise CommandError(f"No account '{account}'")
        try:
            granted = account_registry_grant(account=found, server=server, granted=not revoke)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write("\n".join(granted))
