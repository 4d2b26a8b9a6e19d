"""Publisher of the gateway's route feed: routes, tokens and grants pushed to Redis after each change.

Services call the ``*_publish_on_commit`` functions inside their transaction; the publication runs after
the commit, reads the committed rows afresh and writes them with ``gateway.records.CAS_SET`` (newer
versions win, every write is broadcast on the feed channel; each record signed with
``GATEWAY_RECORD_KEY``), so each gateway sees the change within milliseconds. A failed publication
(Redis down) is logged, never raised: the write already committed, and the gateway re-reads records
older than ``GATEWAY_RECORD_TTL_SECONDS`` from the database.

``activity_get`` reads the last-request times the gateway records, for the idle sweep.
"""

import functools
import logging
import time

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from controlplane.models import Account, ApiToken, Membership
from deployments.models import Cluster
from deployments.names import host_id
from gateway.records import ACTIVITY, CAS_SET, cas_args, grant_record, route_record, token_record

from .models import Endpoint

log = logging.getLogger(__name__)

ROUTE_FIELDS = ("id", "name", "type", "state", "intent", "message", "image", "account_id", "account__slug",
                "account__kind", "account__user_id", "instance__vendor", "instance__region")


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts: a publication runs after a web request's commit and must not hold it up for long
    # (a healthy Redis answers the script in well under a millisecond).
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=30)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def _quiet(publish):
    """A publication runs after a commit: its failure is logged and never undoes or fails the request."""

    @functools.wraps(publish)
    def wrapper(**kwargs) -> None:
        try:
            publish(**kwargs)
        except Exception as exc:
            log.warning("gateway.publish_failed what=%s error=%s", publish.__name__, type(exc).__name__)

    return wrapper


def _write(kind: str, key: str, version: int, record: dict | None) -> None:
    if not settings.GATEWAY_RECORD_KEY:  # beat and migrate get no key (controlplane.settings.PROCESS)
        raise ImproperlyConfigured("publishing a gateway record needs GATEWAY_RECORD_KEY or DJANGO_SECRET_KEY")
    keys, args = cas_args(settings.GATEWAY_REDIS_PREFIX, kind, key, version, record,
                          settings.GATEWAY_RECORD_TTL_SECONDS, publish=True,
                          signing_key=settings.GATEWAY_RECORD_KEY.encode())
    try:
        redis_client().eval(CAS_SET, len(keys), *keys, *args)
    except redis.RedisError as exc:
        log.warning("gateway.publish_failed kind=%s key=%s error=%s", kind, key[:16], type(exc).__name__)


# ---------------------------------------------------------------- routes
def route_row(*, account_slug: str, name: str) -> dict | None:
    """The row ``gateway.records.route_record`` needs, or None when the endpoint does not exist."""
    row = Endpoint.objects.filter(account__slug=account_slug, name=name).values(*ROUTE_FIELDS).first()
    if row is None:
        return None
    cluster = (Cluster.objects.filter(vendor=row.pop("instance__vendor"), region=row.pop("instance__region"),
                                      enabled=True).values("namespace_prefix", "service_url_template", "ingress_domain",
                                                           "simulated").first()
               or {"namespace_prefix": "", "service_url_template": None, "ingress_domain": "", "simulated": False})
    return {**{k.replace("__", "_"): v for k, v in row.items()}, **cluster}


@_quiet
def route_publish(*, account_slug: str, name: str) -> None:
    """Publish the endpoint's current route (or its absence, once deleted). Idempotent."""
    version = time.time_ns()
    row = route_row(account_slug=account_slug, name=name)
    _write("route", host_id(account_slug, name), version, route_record(row) if row else None)


def route_publish_on_commit(endpoint: Endpoint) -> None:
    """After the current transaction commits, publish ``endpoint``'s route (or its absence)."""
    account_slug, name = endpoint.account.slug, endpoint.name
    transaction.on_commit(lambda: route_publish(account_slug=account_slug, name=name))


# ---------------------------------------------------------------- tokens and grants
@_quiet
def token_publish(*, digest: str) -> None:
    version = time.time_ns()
    token = (ApiToken.objects.filter(digest=digest)
             .values("user_id", "expires_at", "revoked_at", "user__is_active").first())
    record = None
    if token is not None:
        expires = token["expires_at"].timestamp() if token["expires_at"] else None
        revoked = token["revoked_at"] is not None or not token["user__is_active"]  # deactivated users too
        record = token_record(user_id=token["user_id"], expires_at=expires, revoked=revoked)
    _write("token", digest, version, record)


def user_tokens_publish_on_commit(user) -> None:
    """After commit, republish every token of ``user`` (activated, deactivated or deleted)."""
    digests = list(ApiToken.objects.filter(user=user).values_list("digest", flat=True))
    transaction.on_commit(lambda: [token_publish(digest=digest) for digest in digests])


def token_publish_on_commit(token: ApiToken) -> None:
    """After commit, publish the token's validity (created, revoked, expiry changed or deleted)."""
    digest = token.digest
    transaction.on_commit(lambda: token_publish(digest=digest))


@_quiet
def grant_publish(*, account_id: int, user_id: int) -> None:
    version = time.time_ns()
    role = Membership.objects.filter(account_id=account_id, user_id=user_id).values_list("role", flat=True).first()
    _write("grant", f"{account_id}:{user_id}", version, grant_record(role))


def grant_publish_on_commit(*, account: Account, user_id: int) -> None:
    """After commit, publish the user's role in the organisation (set, changed or removed)."""
    account_id = account.pk
    transaction.on_commit(lambda: grant_publish(account_id=account_id, user_id=user_id))


# ---------------------------------------------------------------- activity
def activity_get(endpoint_ids: list[int]) -> dict[int, float]:
    """Unix seconds of the last request the gateway saw per endpoint (absent = none recorded).

    Raises redis.RedisError when Redis cannot be read: the caller must not guess idleness.
    """
    if not endpoint_ids:
        return {}
    scores = redis_client().zmscore(settings.GATEWAY_REDIS_PREFIX + ACTIVITY, [str(i) for i in endpoint_ids])
    return {i: s for i, s in zip(endpoint_ids, scores, strict=True) if s is not None}
