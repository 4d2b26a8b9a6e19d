"""The control-plane Django project: settings, accounts, tokens, errors and health."""

from .celery import app as celery_app

__all__ = ["celery_app"]
