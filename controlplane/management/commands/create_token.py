"""``manage.py create_token USERNAME [--role read|write] [--name N] [--expires-days D]``: prints the token."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from controlplane.errors import DomainError
from controlplane.services import token_create


class Command(BaseCommand):
    help = "Create an API token for a user. Prints the secret, which is not shown again."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=["read", "write"], default="write")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args, username, role, name, expires_days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user '{username}'")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            _token, secret = token_create(user=user, name=name, role=role, expires_at=expires_at)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(secret)
