"""Readiness checks of the database and the broker, each bounded to a couple of seconds."""

import redis
from django.conf import settings
from django.db import connection


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure means not ready; the reason is reported, never raised
        connection.close_if_unusable_or_obsolete()
        return f"unavailable: {type(exc).__name__}"


def check_broker() -> str:
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
