"""Shared fixtures: API clients per caller, a clean Redis database for queued messages."""

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import make_token, make_user


@pytest.fixture
def broker():
    """The test Redis database, emptied before and after the test."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def bearer_client(secret: str | None) -> APIClient:
    client = APIClient()
    if secret:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def alice(db):
    return make_user("alice", email="alice@example.com")


@pytest.fixture
def alice_api(alice):
    return bearer_client(make_token(alice))


@pytest.fixture
def anon_api():
    return bearer_client(None)


@pytest.fixture(autouse=True)
def _seeded_catalog(request):
    """Transactional tests flush every table afterwards, the seeded catalog included: put it back."""
    marker = request.node.get_closest_marker("django_db")
    transactional = {"transactional_db", "live_server"} & set(request.fixturenames) or (
        marker is not None and marker.kwargs.get("transaction"))
    if transactional:
        request.getfixturevalue("transactional_db")
        from quotas.services import catalog_seed

        catalog_seed()
