"""``manage.py create_user USERNAME [--email E] [--staff]``: prints the username."""

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import DomainError
from controlplane.services import user_create


class Command(BaseCommand):
    help = "Create a user and their personal account (namespace = username). Prints the username."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--staff", action="store_true", help="Staff and superuser: may sign in to the admin")
        parser.add_argument("--password", default=None, help="Admin password (staff); omit for token-only users")

    def handle(self, *args, username, email, staff, password, **options):
        try:
            user = user_create(username=username, email=email, is_staff=staff, password=password)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(user.get_username())
