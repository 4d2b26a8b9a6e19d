"""Loaded by pytest before Django (``-p tests.testenv``): point the suite at its own Redis database.

Postgres isolation comes from pytest-django's ``test_<name>`` database; Redis gets database 15 of the
same server so queued test messages never mix with a running ``make run``, and a queue name of its own.
"""

import os
import uuid
from urllib.parse import urlparse, urlunparse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ.setdefault("SECRETS_ENCRYPTION_KEY", "test-encryption-key")
os.environ.setdefault("DJANGO_DEBUG", "true")  # off by default (production-safe); the suite is development
_redis = urlparse(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
os.environ["REDIS_URL"] = urlunparse(_redis._replace(path="/15"))
os.environ.pop("CELERY_BROKER_URL", None)
# A queue of this run's own: concurrent runs sharing the Redis database never take each other's messages.
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = f"test-{uuid.uuid4().hex[:8]}"
os.environ.setdefault("TOKEN_LAST_USED_RESOLUTION_SECONDS", "0")
