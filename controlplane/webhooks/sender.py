"""Sending deliveries: claim a due one, send one signed attempt to the checked address, record it.

Claiming takes the delivery row with ``SELECT ... FOR UPDATE SKIP LOCKED`` and moves its
``next_attempt_at`` ahead by ``WEBHOOK_LEASE_SECONDS`` before anything is sent, then commits: a second
worker handed the same delivery (the on-commit message and the sweep may both queue it) finds it locked
or not due and does nothing, and no transaction stays open across the network. A worker that dies
mid-attempt leaves the row pending; once the lease ends the sweep queues it again (at least once, with
the same ``webhook-id``).

Each attempt resolves the host, checks every address (``addresses.resolve``), connects to the checked
address with the URL's host as Host header and TLS name, follows no redirect, and reads at most
``WEBHOOK_RESPONSE_MAX_BYTES`` within ``WEBHOOK_TIMEOUT_SECONDS``. A 2xx answer delivers; anything else
(other status, timeout, connection error, a refused address) is retried with capped exponential backoff
and jitter until ``retry_until``. ``WEBHOOK_DISABLE_AFTER_FAILURES`` failures in a row disable the
subscription, audited.
"""

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..encryption import decrypt_json
from ..models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from ..services import audit_record
from . import signing
from .addresses import AddressRefused, Resolved, resolve

log = logging.getLogger(__name__)
Outcome = WebhookAttempt.Outcome
EXCERPT_CHARS = 1024
USER_AGENT = "controlplane-webhooks/1"


@dataclass
class Answer:
    outcome: str
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""


def retry_delay(attempts: int) -> float:
    """Seconds before the attempt after ``attempts`` failed ones: base × 2^(attempts-1), capped, ±25 % jitter
    (so receivers coming back from an outage are not hit by every retry at once)."""
    delay = min(settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), settings.WEBHOOK_RETRY_MAX_SECONDS)
    return delay * (0.75 + random.random() / 2)


def _certificates() -> str | None:
    """The CA bundle receivers' certificates are verified against: the operator's (WEBHOOK_CA_BUNDLE, e.g. for
    an internal receiver under a private CA), else certifi's, else the system's."""
    if settings.WEBHOOK_CA_BUNDLE:
        return settings.WEBHOOK_CA_BUNDLE
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _pool(target: Resolved, timeout: urllib3.Timeout):
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=_certificates())
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)


def _host_header(target: Resolved) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _read_bounded(response, deadline: float) -> bytes:
    """At most WEBHOOK_RESPONSE_MAX_BYTES of the answer's body, read until the attempt's deadline: the status
    is already known, so a body that trickles in is cut short rather than holding the worker."""
    chunks, size, limit = [], 0, settings.WEBHOOK_RESPONSE_MAX_BYTES
    while size < limit and time.monotonic() < deadline:
        try:
            chunk = response.read(min(8192, limit - size), decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError):  # the body broke off: what arrived is the excerpt
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def send(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One POST of ``body`` to ``url`` under the SSRF rules; never raises for what the network does."""
    try:
        target = resolve(url)
    except AddressRefused as exc:
        return Answer(Outcome.REFUSED, error=f"refused: {exc}"[:512])
    deadline = time.monotonic() + settings.WEBHOOK_TIMEOUT_SECONDS
    pool = _pool(target, urllib3.Timeout(total=settings.WEBHOOK_TIMEOUT_SECONDS))
    try:
        response = pool.urlopen("POST", target.target, body=body, redirect=False, retries=False,
                                preload_content=False, assert_same_host=False,
                                headers={"Host": _host_header(target), "Content-Type": "application/json",
                                         "User-Agent": USER_AGENT, **headers})
        try:
            content = _read_bounded(response, deadline)
        finally:
            response.close()  # never drained: the rest of a large answer is not read
    except (urllib3.exceptions.TimeoutError, TimeoutError) as exc:
        return Answer(Outcome.TIMEOUT, error=f"timed out after {settings.WEBHOOK_TIMEOUT_SECONDS} s ({type(exc).__name__})")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return Answer(Outcome.NETWORK_ERROR, error=f"{type(exc).__name__}: {exc}"[:512])
    finally:
        pool.close()
    excerpt = content.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    if 200 <= response.status < 300:
        return Answer(Outcome.SUCCEEDED, response.status, excerpt=excerpt)
    return Answer(Outcome.HTTP_ERROR, response.status, error=f"answered {response.status}", excerpt=excerpt)


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("subscription")
                    .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
                            subscription__enabled=True).first())
        if delivery is None:
            return None
        delivery.next_attempt_at = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
        delivery.save(update_fields=["next_attempt_at"])
    return delivery


def deliver(delivery_id: int, *, now: datetime | None = None) -> WebhookAttempt | None:
    """Make the delivery's next attempt if it is due (at ``now``, default the present) and nobody else is
    making it; returns the attempt recorded, None when there was nothing to do."""
    now = now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    subscription = delivery.subscription
    secret = (decrypt_json(subscription.secret_encrypted, {}) or {}).get("secret", "")
    body = delivery.body.encode()
    started = time.monotonic()
    answer = send(subscription.url, body, signing.headers(secret, delivery.message_id, int(time.time()), body))
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record(delivery, answer, duration_ms, now)


@transaction.atomic
def _record(delivery: WebhookDelivery, answer: Answer, duration_ms: int, now: datetime) -> WebhookAttempt | None:
    if not WebhookDelivery.objects.select_for_update().filter(pk=delivery.pk).exists():
        return None  # its subscription was deleted meanwhile: nothing left to log
    attempt = WebhookAttempt.objects.create(
        delivery=delivery, attempted_at=now, outcome=answer.outcome, status_code=answer.status_code,
        duration_ms=duration_ms, error=answer.error, response_excerpt=answer.excerpt, manual=delivery.manual)
    delivery.attempt_count += 1
    delivery.last_attempt_at, delivery.manual = now, False
    subscriptions = WebhookSubscription.objects.filter(pk=delivery.subscription_id)
    if answer.outcome == Outcome.SUCCEEDED:
        delivery.status, delivery.next_attempt_at, delivery.delivered_at = WebhookDelivery.Status.SUCCEEDED, None, now
        subscriptions.exclude(consecutive_failures=0).update(consecutive_failures=0)
    else:
        if now >= delivery.retry_until:
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
        else:
            # Never past the window: the last attempt is made at its end, and its failure gives up.
            delivery.next_attempt_at = min(now + timedelta(seconds=retry_delay(delivery.attempt_count)),
                                           delivery.retry_until)
        subscriptions.update(consecutive_failures=F("consecutive_failures") + 1)
        _disable_if_failing(delivery.subscription_id)
    delivery.save(update_fields=["attempt_count", "last_attempt_at", "manual", "status", "next_attempt_at",
                                 "delivered_at"])
    log.info("webhook.attempt delivery=%s subscription=%s type=%s outcome=%s status=%s ms=%s", delivery.message_id,
             delivery.subscription_id, delivery.event_type, answer.outcome, answer.status_code, duration_ms)
    return attempt


def _disable_if_failing(subscription_id: int) -> None:
    subscription = WebhookSubscription.objects.select_for_update().select_related("account").get(pk=subscription_id)
    limit = settings.WEBHOOK_DISABLE_AFTER_FAILURES
    if not subscription.enabled or subscription.consecutive_failures < limit:
        return
    subscription.enabled = False
    subscription.disabled_reason = f"Disabled after {subscription.consecutive_failures} failed attempts in a row"
    subscription.updated_at = timezone.now()
    subscription.save(update_fields=["enabled", "disabled_reason", "updated_at"])
    audit_record(actor=None, action="webhook.disable", account=subscription.account, target=str(subscription.pk),
                 diff={"enabled": [True, False], "consecutiveFailures": [None, subscription.consecutive_failures]})
    log.warning("webhook.disabled subscription=%s failures=%s", subscription.pk, subscription.consecutive_failures)


def deliveries_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Ids of pending deliveries due at ``now`` whose subscription is enabled, oldest due first: what the beat
    sweep queues (retries, and anything whose message was lost)."""
    now = now or timezone.now()
    return list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
                                               subscription__enabled=True)
                .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def deliveries_prune(*, now: datetime | None = None, batch: int = 5000) -> int:
    """Delete up to ``batch`` finished deliveries (with their attempts) older than WEBHOOK_RETENTION_DAYS, oldest
    first; returns how many deliveries went. Pending ones are never pruned."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    old = (WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.PENDING).filter(created_at__lt=cutoff)
           .order_by("created_at").values_list("pk", flat=True)[:batch])
    deleted = WebhookDelivery.objects.filter(pk__in=list(old)).delete()[1]
    return deleted.get(WebhookDelivery._meta.label, 0)
