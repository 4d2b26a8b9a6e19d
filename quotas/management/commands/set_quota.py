"""``manage.py set_quota ACCOUNT --accelerator cpu|gpu|neuron --limit N``: prints the new limit."""

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import DomainError
from controlplane.models import Account
from quotas.services import quota_set


class Command(BaseCommand):
    help = "Set an account's quota for one accelerator (units: vCPUs for cpu, devices otherwise)."

    def add_arguments(self, parser):
        parser.add_argument("account")
        parser.add_argument("--accelerator", choices=["cpu", "gpu", "neuron"], required=True)
        parser.add_argument("--limit", type=int, required=True)

    def handle(self, *args, account, accelerator, limit, **options):
        target = Account.objects.filter(slug=account).first()
        if target is None:
            raise CommandError(f"No account '{account}'")
        try:
            quota = quota_set(account=target, accelerator=accelerator, limit=limit)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(str(quota.limit))
