"""``manage.py create_org SLUG [--member USER:ROLE ...]``: prints the slug."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from controlplane.errors import DomainError
from controlplane.services import membership_set, org_create


class Command(BaseCommand):
    help = "Create an organisation, optionally with members (role read|write|admin). Prints the slug."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--member", action="append", default=[], metavar="USER:ROLE")

    def handle(self, *args, slug, member, **options):
        User = get_user_model()
        try:
            with transaction.atomic():
                account = org_create(slug=slug)
                for item in member:
                    username, _, role = item.partition(":")
                    user = User.objects.filter(username=username).first()
                    if user is None:
                        raise CommandError(f"No user '{username}'")
                    membership_set(account=account, user=user, role=role or "read")
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(account.slug)
