"""The route feed without a gateway process: what Django publishes, in which order it wins, and that the
gateway's own database read builds the very same records.
"""

import asyncio
import json
from dataclasses import replace

import pytest
import redis
from django.conf import settings

from controlplane import records
from controlplane.names import host_id
from gateway.config import from_settings
from gateway.db import Database
from tests.factories import endpoint_spec, make_org, make_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def stored(kind: str, key: str):
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return records.parse_stored(client.get(records.record_key(settings.GATEWAY_REDIS_PREFIX, kind, key)),
                                    f"{kind}:{key}", signing_key=settings.GATEWAY_RECORD_KEY.encode())
    finally:
        client.close()


def test_gateway_database_reads_build_the_records_django_publishes(gateway_prefix, gateway_cluster):
    from django.db import connection

    from controlplane.selectors import token_digest
    from endpoints import services

    alice, bob = make_user("alice"), make_user("bob")
    acme = make_org("acme", members={bob: "write"})
    secret = make_token(alice)
    services.endpoint_create(account=acme, actor=alice, spec=endpoint_spec(
        "svc", type="protected", model={"image": {"custom": {"url": "ghcr.io/x:1", "healthRoute": "/ready"}}}))
    host, digest = host_id("acme", "svc"), token_digest(secret)
    published = {("route", host): stored("route", host)[1], ("token", digest): stored("token", digest)[1],
                 ("grant", f"{acme.pk}:{bob.pk}"): stored("grant", f"{acme.pk}:{bob.pk}")[1]}
    assert published[("route", host)]["health"] == "/ready" and published[("route", host)]["owner"] is None
    assert published[("grant", f"{acme.pk}:{bob.pk}")] == {"role": "write"}

    db = Database(replace(from_settings(), database=connection.settings_dict).conninfo())

    async def load_all():
        try:
            return {key: await db.load(*key) for key in published}
        finally:
            await db.close()

    assert asyncio.run(load_all()) == published


def test_an_older_publication_never_overwrites_a_newer_one(gateway_prefix):
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(settings.GATEWAY_REDIS_PREFIX + records.FEED)
    pubsub.get_message(timeout=1)

    def write(version: int, record) -> int:
        keys, args = records.cas_args(settings.GATEWAY_REDIS_PREFIX, "token", "d1", version, record, 60, True,
                                      signing_key=settings.GATEWAY_RECORD_KEY.encode())
        return client.eval(records.CAS_SET, len(keys), *keys, *args)

    assert write(200, {"user": 1, "expires": None, "revoked": True}) == 1
    assert write(100, {"user": 1, "expires": None, "revoked": False}) == 0  # read earlier: refused
    assert stored("token", "d1") == (200, {"user": 1, "expires": None, "revoked": True})
    message = pubsub.get_message(timeout=1)
    assert records.parse_feed(message["data"], signing_key=settings.GATEWAY_RECORD_KEY.encode()) == (
        "token", "d1", 200, {"user": 1, "expires": None, "revoked": True})
    assert pubsub.get_message(timeout=0.2) is None  # the refused write published nothing
    pubsub.close()
    client.close()


def test_admin_edits_of_tokens_and_memberships_reach_the_feed(gateway_prefix, client):
    from controlplane.models import ApiToken, Membership

    operator = make_user("ops", is_staff=True)
    operator.set_password("pw")
    operator.save()
    client.login(username="ops", password="pw")
    bob = make_user("bob")
    acme = make_org("acme", members={bob: "read"})
    secret = make_token(bob)
    token = ApiToken.objects.get(prefix=secret[:10])
    r = client.post("/admin/controlplane/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert r.status_code == 302, r.content[:500]
    assert stored("token", token.digest)[1]["revoked"] is True

    membership = Membership.objects.get(account=acme, user=bob)
    r = client.post(f"/admin/controlplane/membership/{membership.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302, r.content
    assert stored("grant", f"{acme.pk}:{bob.pk}")[1] == {"role": None}
    assert json.dumps(stored("grant", f"{acme.pk}:{bob.pk}")[1]) == '{"role": null}'
