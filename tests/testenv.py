"""Loaded by pytest before Django (``-p tests.testenv``): point the suite at its own Redis database.

Postgres isolation comes from pytest-django's ``test_<name>`` database; Redis gets database 15 of the
same server so queued test messages never mix with a running ``make run``.
"""

import os
from urllib.parse import urlparse, urlunparse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ.setdefault("SECRETS_ENCRYPTION_KEY", "test-encryption-key")
_redis = urlparse(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
os.environ["REDIS_URL"] = urlunparse(_redis._replace(path="/15"))
os.environ.pop("CELERY_BROKER_URL", None)
os.environ.setdefault("TOKEN_LAST_USED_RESOLUTION_SECONDS", "0")
