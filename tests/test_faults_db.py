"""Postgres unavailable: the API answers 503 in the error shape, never a traceback, and recovers alone.

The fault is real. A live server runs against the test database; the test then makes Postgres itself
refuse it (``ALTER DATABASE ... ALLOW_CONNECTIONS false``) and kills every backend connected to it
(``pg_terminate_backend``), so both open connections and new ones fail exactly as in an outage. The
database is put back in the fixture's teardown, whatever the test did. A second test kills the
backend of a request while it is inside the create transaction, waiting on the account lock.
"""

import threading
import time

import psycopg
import pytest
import requests
from django.db import connection

from endpoints.models import Endpoint
from tests.factories import endpoint_spec, make_token, make_user
from tests.helpers import expect, live_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ERROR_SHAPE = {"error", "code"}


class Postgres:
    """Superuser control of the test database, from a connection to the ``postgres`` database."""

    def __init__(self):
        params = connection.settings_dict
        self.database = params["NAME"]
        self.dsn = dict(host=params["HOST"] or None, port=params["PORT"] or None, user=params["USER"] or None,
                        password=params["PASSWORD"] or None)
        self.admin = psycopg.connect(dbname="postgres", autocommit=True, **self.dsn)
        self.refusing = False

    def refuse(self) -> None:
        """New connections to the test database fail and every existing one is killed."""
        self.refusing = True
        self.admin.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false')
        self.terminate()

    def terminate(self, *, waiting_on_lock: bool = False) -> int:
        query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        if waiting_on_lock:
            query += " AND wait_event_type = 'Lock'"
        return len(self.admin.execute(query, [self.database]).fetchall())

    def accept(self) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')
        self.refusing = False

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(dbname=self.database, **self.dsn)

    def close(self) -> None:
        if self.refusing:
            self.accept()
        self.admin.close()


@pytest.fixture
def postgres():
    pg = Postgres()
    yield pg
    pg.close()
    # The test's own connection was killed with the others: reconnect before pytest-django flushes.
    connection.close()


@pytest.fixture
def alice(live_server):
    user = make_user("alice")
    return {"user": user, "token": make_token(user), "url": live_server.url}


def call(alice, method: str, path: str, *, token: str | None = "alice", **kwargs) -> requests.Response:
    call = live_api(alice["url"], alice["token"] if token == "alice" else token, timeout=15)
    try:
        return call(method, path, **kwargs)
    finally:
        call.close()


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert ERROR_SHAPE <= set(body) and body["code"] == "service_unavailable", body
    assert response.headers.get("Retry-After") == "5"
    assert "Traceback" not in response.text and "psycopg" not in response.text


def test_database_outage_is_a_503_everywhere_and_recovers_without_a_restart(alice, postgres):
    expect(call(alice, "GET", "/v2/endpoint/alice"), 200)
    expect(call(alice, "GET", "/readyz"), 200)

    postgres.refuse()
    started = time.monotonic()
    # Token authentication is the first thing to need the database: it must be the 503, not a 500/401.
    assert_unavailable(call(alice, "GET", "/v2/endpoint/alice"))
    assert_unavailable(call(alice, "GET", "/api/whoami-v2"))
    assert_unavailable(call(alice, "POST", "/v2/endpoint/alice", json=endpoint_spec("down")))
    assert_unavailable(call(alice, "PUT", "/v2/endpoint/alice/down", json={"tags": ["x"]}))
    assert_unavailable(call(alice, "GET", "/v2/quotas/alice"))
    assert_unavailable(call(alice, "GET", "/v2/endpoint/alice", token="cpt_not-a-real-token"))
    # Outside DRF: the admin reads its session from the database, /metrics reads gauges from it.
    assert_unavailable(requests.get(alice["url"] + "/admin/", cookies={"sessionid": "x" * 32}, timeout=15))
    assert_unavailable(requests.get(alice["url"] + "/metrics", timeout=15))
    # Readiness names what is down; liveness stays up (a restart would not help).
    ready = requests.get(alice["url"] + "/readyz", timeout=15)
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"].startswith("unavailable"), ready.json()
    assert ready.json()["checks"]["broker"] == "ok", ready.json()
    expect(requests.get(alice["url"] + "/healthz", timeout=15), 200)
    # Postgres refuses at once, so failing is fast (the connect timeout would be 5 s per request).
    assert time.monotonic() - started < 10

    postgres.accept()
    connection.close()
    r = call(alice, "POST", "/v2/endpoint/alice", json=endpoint_spec("after"))
    assert r.status_code == 202, r.text
    expect(call(alice, "GET", "/v2/endpoint/alice/after"), 200)
    expect(requests.get(alice["url"] + "/readyz", timeout=15), 200)
    assert list(Endpoint.objects.values_list("name", flat=True)) == ["after"]


def test_backend_killed_inside_the_create_transaction_is_a_503_and_writes_nothing(alice, postgres):
    # Hold alice's account row from outside, so the create blocks on it inside its transaction.
    locker = postgres.connect()
    locker.execute("SELECT id FROM controlplane_account WHERE slug = 'alice' FOR UPDATE")
    result = {}

    def create():
        result["response"] = call(alice, "POST", "/v2/endpoint/alice", json=endpoint_spec("mid-flight"))

    thread = threading.Thread(target=create)
    thread.start()
    deadline = time.monotonic() + 10
    while not postgres.terminate(waiting_on_lock=True):
        assert time.monotonic() < deadline, "the create never waited on the account lock"
        time.sleep(0.05)
    thread.join(15)
    locker.rollback()
    locker.close()

    assert_unavailable(result["response"])
    assert not Endpoint.objects.filter(name="mid-flight").exists()
    r = call(alice, "POST", "/v2/endpoint/alice", json=endpoint_spec("mid-flight"))
    assert r.status_code == 202, r.text
