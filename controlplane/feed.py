"""Publisher of the gateway's feed: signed records written to Redis after each change, and the gateway's
activity read back.

Services call the ``*_publish_on_commit`` functions inside their transaction; the publication runs after
the commit, reads the committed rows afresh and writes them with ``controlplane.records.CAS_SET`` (newer
versions win, every write is broadcast on the feed channel; each record signed with
``GATEWAY_RECORD_KEY``), so each gateway sees the change within milliseconds. A failed publication
(Redis down) is logged, never raised: the write already committed, and the gateway re-reads records
older than ``GATEWAY_RECORD_TTL_SECONDS`` from the database.

This module publishes the records of this app's facts (tokens, grants) and holds the writer every
publisher uses (``publication``, ``record_write``); routes are published by ``deployments.feed``, which
knows the clusters serving them. ``activity_get`` reads the last-request times the gateway records, for the
idle sweep.
"""

import functools
import logging
import time

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from .models import Account, ApiToken, Membership
from .records import ACTIVITY, CAS_SET, cas_args, grant_record, token_record

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts: a publication runs after a web request's commit and must not hold it up for long
    # (a healthy Redis answers the script in well under a millisecond).
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=30)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def publication(publish):
    """Decorate a publisher: it runs after a commit, so its failure is logged and never undoes or fails
    the request."""

    @functools.wraps(publish)
    def wrapper(**kwargs) -> None:
        try:
            publish(**kwargs)
        except Exception as exc:
            log.warning("gateway.publish_failed what=%s error=%s", publish.__name__, type(exc).__name__)

    return wrapper


def record_write(kind: str, key: str, version: int, record: dict | None) -> None:
    """Write one signed record (``None`` = known absent) unless a newer version is stored, and broadcast it."""
    if not settings.GATEWAY_RECORD_KEY:  # beat and migrate get no key (controlplane.settings.PROCESS)
        raise ImproperlyConfigured("publishing a gateway record needs GATEWAY_RECORD_KEY or DJANGO_SECRET_KEY")
    keys, args = cas_args(settings.GATEWAY_REDIS_PREFIX, kind, key, version, record,
                          settings.GATEWAY_RECORD_TTL_SECONDS, publish=True,
                          signing_key=settings.GATEWAY_RECORD_KEY.encode())
    try:
        redis_client().eval(CAS_SET, len(keys), *keys, *args)
    except redis.RedisError as exc:
        log.warning("gateway.publish_failed kind=%s key=%s error=%s", kind, key[:16], type(exc).__name__)


# ---------------------------------------------------------------- tokens and grants
@publication
def token_publish(*, digest: str) -> None:
    version = time.time_ns()
    token = (ApiToken.objects.filter(digest=digest)
             .values("user_id", "expires_at", "revoked_at", "user__is_active").first())
    record = None
    if token is not None:
        expires = token["expires_at"].timestamp() if token["expires_at"] else None
        revoked = token["revoked_at"] is not None or not token["user__is_active"]  # deactivated users too
        record = token_record(user_id=token["user_id"], expires_at=expires, revoked=revoked)
    record_write("token", digest, version, record)


def user_tokens_publish_on_commit(user) -> None:
    """After commit, republish every token of ``user`` (activated, deactivated or deleted)."""
    digests = list(ApiToken.objects.filter(user=user).values_list("digest", flat=True))
    transaction.on_commit(lambda: [token_publish(digest=digest) for digest in digests])


def token_publish_on_commit(token: ApiToken) -> None:
    """After commit, publish the token's validity (created, revoked, expiry changed or deleted)."""
    digest = token.digest
    transaction.on_commit(lambda: token_publish(digest=digest))


@publication
def grant_publish(*, account_id: int, user_id: int) -> None:
    version = time.time_ns()
    role = Membership.objects.filter(account_id=account_id, user_id=user_id).values_list("role", flat=True).first()
    record_write("grant", f"{account_id}:{user_id}", version, grant_record(role))


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
