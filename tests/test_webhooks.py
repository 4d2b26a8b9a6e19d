"""Signed lifecycle webhooks: the subscription API, the outbox, the signed delivery with its retries and
log, the SSRF guard at both ends, auto-disable and redelivery, against a real HTTP receiver.

The receiver checks every signature with its own implementation of the Standard Webhooks check (not the
control plane's ``signing`` module). Time is driven by moving a delivery's ``next_attempt_at``, never by
sleeping through a backoff. The real-worker test (a Celery worker SIGKILLed mid-attempt) is in
tests/test_webhooks_worker.py.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.utils import timezone

from controlplane.models import AuditEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from controlplane.webhooks import events
from controlplane.webhooks.addresses import AddressRefused, resolve
from controlplane.webhooks.sender import deliver, deliveries_due, deliveries_prune, retry_delay
from endpoints import services as endpoint_services
from quotas.services import quota_request_create, quota_request_decide, quota_set
from tests.factories import endpoint_spec, make_org, make_user
from tests.helpers import api_client, expect, user_api

pytestmark = pytest.mark.django_db
ENDPOINT_SECRET = "sk-endpoint-secret-value"


def standard_webhooks_verify(secret: str, headers: dict, body: bytes, tolerance: int = 300) -> None:
    """What a receiver does (written from the Standard Webhooks rules, independently of the sender)."""
    key = base64.b64decode(secret[len("whsec_"):])
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(stamp)) <= tolerance, "timestamp outside the tolerance"
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    offered = [part.split(",", 1)[1].encode() for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    assert any(hmac.compare_digest(expected, sig) for sig in offered), f"bad signature {headers['webhook-signature']}"


class Receiver:
    """An HTTP server on 127.0.0.1 answering POSTs with scripted statuses (then ``default``); records each
    request's headers, body and the verification outcome under ``secret`` (settable)."""

    def __init__(self, statuses=(), default: int = 200, body: bytes = b"ok", extra_headers=None):
        self.statuses, self.default, self.body = list(statuses), default, body
        self.extra_headers = extra_headers or {}
        self.requests: list[dict] = []
        self.secret: str | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    verified = None
                    if receiver.secret:
                        try:
                            standard_webhooks_verify(receiver.secret, headers, body)
                            verified = True
                        except AssertionError:
                            verified = False
                    receiver.requests.append({"headers": headers, "body": body, "verified": verified,
                                              "path": self.path})
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                self.send_response(status)
                for key, value in receiver.extra_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32"]  # the test's own receiver; refused by default
    made = []

    def make(*args, **kwargs) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def subscribe(api, url: str, events_=None, namespace: str = "alice") -> dict:
    body = {"url": url, **({"events": events_} if events_ is not None else {})}
    return expect(api.post(f"/v2/webhooks/{namespace}", body, format="json"), 201).json()


def due_now(delivery: WebhookDelivery) -> None:
    """The backoff has passed (instead of sleeping through it)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def only_delivery(**filters) -> WebhookDelivery:
    (delivery,) = WebhookDelivery.objects.filter(**filters)
    return delivery


# ---------------------------------------------------------------- signed delivery, retries, the log
def test_a_real_receiver_gets_signed_retries_until_it_answers_200(alice, alice_api, receiver):
    hook = receiver(statuses=[500, 500])
    created = subscribe(alice_api, hook.url, ["endpoint.created"])
    hook.secret = created["secret"]
    assert created["secret"].startswith("whsec_") and len(base64.b64decode(created["secret"][6:])) >= 24
    expect(alice_api.post("/v2/endpoint/alice", endpoint_spec("ep", model={"secrets": {"S": ENDPOINT_SECRET}}),
                          format="json"), 202)
    delivery = only_delivery(event_type="endpoint.created")

    first = deliver(delivery.pk)
    assert (first.outcome, first.status_code) == ("http_error", 500)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.next_attempt_at > timezone.now()
    assert deliver(delivery.pk) is None, "not due yet: nothing is sent"
    for _ in range(2):
        due_now(delivery)
        deliver(delivery.pk)

    assert [r["verified"] for r in hook.requests] == [True, True, True]
    assert len({r["headers"]["webhook-id"] for r in hook.requests}) == 1, "one webhook-id for every attempt"
    assert {r["body"] for r in hook.requests} == {hook.requests[0]["body"]}, "the same bytes every time"
    assert hook.requests[0]["headers"]["host"] == f"127.0.0.1:{hook.port}" and hook.requests[0]["path"] == "/hook"
    payload = json.loads(hook.requests[0]["body"])
    assert payload["type"] == "endpoint.created" and payload["timestamp"].endswith("Z")
    assert payload["data"]["namespace"] == "alice" and payload["data"]["name"] == "ep"
    assert payload["data"]["state"] == "pending"
    assert ENDPOINT_SECRET.encode() not in hook.requests[0]["body"]

    log = expect(alice_api.get(f"/v2/webhooks/alice/{created['id']}/deliveries"), 200).json()["items"]
    assert [a["statusCode"] for a in log[0]["attempts"]] == [500, 500, 200]
    assert [a["outcome"] for a in log[0]["attempts"]] == ["http_error", "http_error", "succeeded"]
    assert log[0]["status"] == "succeeded" and log[0]["messageId"] == hook.requests[0]["headers"]["webhook-id"]
    assert log[0]["attempts"][0]["responseExcerpt"] == "ok" and log[0]["payload"] == payload
    assert all(a["durationMs"] >= 0 for a in log[0]["attempts"])


def test_backoff_doubles_with_jitter_and_a_delivery_gives_up_after_its_window(alice, alice_api, receiver, settings):
    for attempts, base in ((1, 30), (2, 60), (5, 480)):
        delays = {retry_delay(attempts) for _ in range(20)}
        assert all(0.75 * base <= d <= 1.25 * base for d in delays) and len(delays) > 1
    assert retry_delay(40) <= settings.WEBHOOK_RETRY_MAX_SECONDS * 1.25
    hook = receiver(default=503)
    subscribe(alice_api, hook.url)
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={"x": 1})
    deliver(delivery.pk)
    later = delivery.retry_until + timedelta(seconds=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=later)
    deliver(delivery.pk, now=later)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at, delivery.attempt_count) == ("failed", None, 2)


def test_every_event_kind_reaches_a_catch_all_subscription_without_secrets(alice, alice_api, receiver, settings):
    from deployments.observe import Observation
    from deployments.status import status_record

    hook = receiver()
    created = subscribe(alice_api, hook.url)
    assert created["events"] == ["*"]
    hook.secret = created["secret"]
    account = alice.personal_account
    endpoint = endpoint_services.endpoint_create(account=account, actor=alice, spec=endpoint_spec(
        "ep", model={"secrets": {"S": ENDPOINT_SECRET}, "env": {"E": "v"}}))
    endpoint_services.endpoint_update(account=account, name="ep", actor=alice,
                                      patch={"model": {"secrets": {"S": "rotated-" + ENDPOINT_SECRET}}})
    endpoint.refresh_from_db()
    status_record(endpoint, endpoint.generation, Observation("running", "Running", 1, 1), url="http://ep")
    operator = make_user("root", is_staff=True)
    request = quota_request_create(account=account, accelerator="gpu", requested_limit=10, reason="r", actor=alice)
    quota_request_decide(request_id=request.pk, approve=True, actor=operator, note="ok")
    quota_set(account=account, accelerator="cpu", limit=0)
    expect(alice_api.post("/v2/endpoint/alice", endpoint_spec("too-big"), format="json"), 403)
    endpoint_services.endpoint_delete(account=account, name="ep", actor=alice)

    for delivery in WebhookDelivery.objects.order_by("pk"):
        deliver(delivery.pk)
    payloads = [json.loads(r["body"]) for r in hook.requests]
    kinds = [(p["type"], p["data"].get("toState")) for p in payloads]
    assert kinds == [("endpoint.created", None), ("endpoint.state_changed", "pending"),
                     ("endpoint.updated", None), ("endpoint.state_changed", "running"),
                     ("quota.request_decided", None), ("quota.exceeded", None), ("endpoint.deleted", None)], kinds
    assert all(r["verified"] for r in hook.requests)
    updated = payloads[2]["data"]
    assert updated["changed"] == ["model.secrets"] and updated["actor"] == "alice"
    assert payloads[3]["data"]["fromState"] == "pending" and payloads[3]["data"]["message"] == "Running"
    assert payloads[4]["data"] == {"namespace": "alice", "requestId": request.pk, "accelerator": "gpu",
                                   "requestedLimit": 10, "status": "approved", "note": "ok", "decidedBy": "root"}
    exceeded = payloads[5]["data"]
    assert (exceeded["name"], exceeded["operation"], exceeded["accelerator"], exceeded["limit"]) == (
        "too-big", "create", "cpu", 0)
    assert payloads[6]["data"]["name"] == "ep" and payloads[6]["data"]["state"] == "deleted"
    for r in hook.requests:
        assert ENDPOINT_SECRET.encode() not in r["body"] and b"whsec_" not in r["body"]


def test_a_subscription_receives_only_the_types_it_asked_for(alice, alice_api, receiver):
    hook = receiver()
    subscribe(alice_api, hook.url, ["endpoint.deleted"])
    endpoint_services.endpoint_create(account=alice.personal_account, actor=alice, spec=endpoint_spec("ep"))
    assert not WebhookDelivery.objects.exists()
    endpoint_services.endpoint_delete(account=alice.personal_account, name="ep", actor=alice)
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["endpoint.deleted"]


@pytest.mark.django_db(transaction=True)
def test_a_change_that_rolls_back_emits_nothing(alice, broker, receiver):
    from controlplane.webhooks.services import webhook_create

    hook = receiver()
    webhook_create(account=alice.personal_account, url=hook.url, actor=alice)
    endpoint_services.endpoint_create(account=alice.personal_account, actor=alice, spec=endpoint_spec("ep"))
    before = WebhookDelivery.objects.count()
    broker.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        endpoint_services.endpoint_pause(account=alice.personal_account, name="ep", actor=alice)
        assert WebhookDelivery.objects.count() > before  # written in the change's transaction...
        raise RuntimeError("the change fails after the event was recorded")
    assert WebhookDelivery.objects.count() == before  # ...and gone with it
    assert not [m for m in broker.messages() if b"webhook_deliver" in m], "nothing queued either"
    endpoint_services.endpoint_pause(account=alice.personal_account, name="ep", actor=alice)
    assert [m for m in broker.messages() if b"webhook_deliver" in m], "a committed change queues its deliveries"


# ---------------------------------------------------------------- SSRF
REFUSED_URLS = ["http://127.0.0.1/hook", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/",
                "http://[::1]:8080/", "http://localhost:8000/hook", "http://0.0.0.0/", "http://192.168.1.1/",
                "http://172.16.0.5/", "http://[fc00::1]/", "http://[fe80::1]/", "http://224.0.0.1/",
                "http://100.64.0.1/", "http://[::ffff:127.0.0.1]/", "http://2130706433/"]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_internal_addresses_are_refused_at_create_naming_url(alice_api, url):
    r = expect(alice_api.post("/v2/webhooks/alice", {"url": url}, format="json"), 400)
    assert list(r.json()["fields"]) == ["url"] and r.json()["code"] == "invalid", r.json()
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http://user:pw@example.com/", "hook",
                                 "http://", "http://example.com:99999/", "gopher://127.0.0.1/"])
def test_only_http_urls_with_a_host_are_taken(alice_api, url):
    r = expect(alice_api.post("/v2/webhooks/alice", {"url": url}, format="json"), 400)
    assert "url" in r.json()["fields"], r.json()


def test_the_resolved_address_is_what_is_checked_and_pinned(settings):
    with pytest.raises(AddressRefused, match="'localhost' resolves to an address webhooks may not") as refused:
        resolve("http://localhost:9/")
    assert "127.0.0.1" not in str(refused.value), "a name's internal address is not told back"
    settings.WEBHOOK_ALLOWED_CIDRS = ["127.0.0.0/8"]
    pinned = resolve("https://localhost:8443/a?b=c")
    assert (pinned.address, pinned.host, pinned.port, pinned.target) == ("127.0.0.1", "localhost", 8443, "/a?b=c")
    assert resolve("http://93.184.215.14/").address == "93.184.215.14"  # a public literal needs no lookup


def test_a_host_that_later_resolves_internally_is_not_contacted(alice, alice_api, receiver, settings):
    hook = receiver()
    created = subscribe(alice_api, f"http://localhost:{hook.port}/hook")  # allowed for now (the operator's CIDR)
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
    settings.WEBHOOK_ALLOWED_CIDRS = []  # as if the name now resolved to an internal address
    attempt = deliver(delivery.pk)
    assert attempt.outcome == "refused" and "'localhost'" in attempt.error and attempt.status_code is None
    assert hook.requests == []
    log = expect(alice_api.get(f"/v2/webhooks/alice/{created['id']}/deliveries"), 200).json()["items"]
    assert log[0]["attempts"][0]["outcome"] == "refused" and log[0]["status"] == "pending"

    settings.WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32"]
    due_now(delivery)
    deliver(delivery.pk)
    assert hook.requests[0]["headers"]["host"] == f"localhost:{hook.port}", "the URL's host, sent to the pinned address"


def test_redirects_are_not_followed_and_answers_are_read_bounded(alice, alice_api, receiver, settings):
    elsewhere = receiver()
    hook = receiver(default=302, extra_headers={"Location": elsewhere.url}, body=b"x" * 200_000)
    settings.WEBHOOK_RESPONSE_MAX_BYTES = 4096
    subscribe(alice_api, hook.url)
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
    attempt = deliver(delivery.pk)
    assert (attempt.outcome, attempt.status_code) == ("http_error", 302)
    assert elsewhere.requests == [] and len(attempt.response_excerpt) == 1024


def test_a_receiver_that_does_not_answer_in_time_is_a_timeout(alice, alice_api, settings):
    import socket

    settings.WEBHOOK_ALLOWED_CIDRS, settings.WEBHOOK_TIMEOUT_SECONDS = ["127.0.0.1/32"], 1
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        subscribe(alice_api, f"http://127.0.0.1:{silent.getsockname()[1]}/")
        with transaction.atomic():
            (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
        started = time.monotonic()
        attempt = deliver(delivery.pk)
        assert attempt.outcome == "timeout" and time.monotonic() - started < 5, attempt.error
    finally:
        silent.close()


# ---------------------------------------------------------------- auto-disable, redelivery, rotation
def test_repeated_failures_disable_the_subscription_with_an_audit_record(alice, alice_api, receiver, settings):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    hook = receiver(default=500)
    created = subscribe(alice_api, hook.url)
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
    for _ in range(3):
        due_now(delivery)
        deliver(delivery.pk)
    body = expect(alice_api.get(f"/v2/webhooks/alice/{created['id']}"), 200).json()
    assert (body["enabled"], body["consecutiveFailures"]) == (False, 3) and "3 failed attempts" in body["disabledReason"]
    audit = AuditEvent.objects.get(action="webhook.disable")
    assert audit.account == alice.personal_account and audit.actor_name == "system"
    due_now(delivery)
    assert deliver(delivery.pk) is None and len(hook.requests) == 3, "a disabled subscription is not contacted"
    with transaction.atomic():
        assert events.emit(account=alice.personal_account, event_type="endpoint.created", data={}) == []
    r = expect(alice_api.post(f"/v2/webhooks/alice/{created['id']}/deliveries/{delivery.pk}/redeliver"), 409)
    assert r.json()["code"] == "webhook_disabled"

    hook.default = 200
    body = expect(alice_api.patch(f"/v2/webhooks/alice/{created['id']}", {"enabled": True}, format="json"), 200).json()
    assert (body["enabled"], body["consecutiveFailures"], body["disabledReason"]) == (True, 0, "")
    assert deliver(delivery.pk).outcome == "succeeded", "its pending delivery goes out again"


def test_manual_redelivery_sends_the_same_message_again(alice, alice_api, receiver):
    hook = receiver()
    created = subscribe(alice_api, hook.url)
    hook.secret = created["secret"]
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={"a": 1})
    deliver(delivery.pk)
    r = expect(alice_api.post(f"/v2/webhooks/alice/{created['id']}/deliveries/{delivery.pk}/redeliver"), 202).json()
    assert r["status"] == "pending" and r["messageId"] == delivery.message_id
    deliver(delivery.pk)
    assert [req["headers"]["webhook-id"] for req in hook.requests] == [delivery.message_id] * 2
    assert all(req["verified"] for req in hook.requests)
    assert list(WebhookAttempt.objects.filter(delivery=delivery).values_list("manual", flat=True)) == [False, True]
    assert AuditEvent.objects.filter(action="webhook.redeliver").count() == 1
    expect(alice_api.post(f"/v2/webhooks/alice/{created['id']}/deliveries/999999/redeliver"), 404)


def test_a_rotated_secret_signs_every_later_attempt(alice, alice_api, receiver):
    hook = receiver(statuses=[500])
    created = subscribe(alice_api, hook.url)
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
    deliver(delivery.pk)
    rotated = expect(alice_api.post(f"/v2/webhooks/alice/{created['id']}/rotate-secret"), 200).json()
    assert rotated["secret"] != created["secret"] and rotated["secret"].startswith("whsec_")
    hook.secret = rotated["secret"]
    due_now(delivery)
    deliver(delivery.pk)
    assert hook.requests[-1]["verified"] is True


# ---------------------------------------------------------------- the API: shapes, validation, limits, auth
def test_subscriptions_are_listed_changed_and_deleted_without_their_secret(alice, alice_api, receiver):
    hook = receiver()
    created = subscribe(alice_api, hook.url, ["endpoint.created", "quota.exceeded"])
    secret = created["secret"]
    assert created["events"] == ["endpoint.created", "quota.exceeded"] and created["enabled"] is True
    stored = WebhookSubscription.objects.get()
    assert secret not in stored.secret_encrypted and "whsec_" not in stored.secret_encrypted
    listed = expect(alice_api.get("/v2/webhooks/alice"), 200)
    detail = expect(alice_api.get(f"/v2/webhooks/alice/{created['id']}"), 200)
    for response in (listed, detail):
        assert secret not in response.content.decode() and "secret" not in response.content.decode()
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    changed = expect(alice_api.patch(f"/v2/webhooks/alice/{created['id']}", {"events": ["*"], "description": "ops"},
                                     format="json"), 200).json()
    assert (changed["events"], changed["description"]) == (["*"], "ops")
    expect(alice_api.delete(f"/v2/webhooks/alice/{created['id']}"), 200)
    expect(alice_api.get(f"/v2/webhooks/alice/{created['id']}"), 404)
    actions = list(AuditEvent.objects.filter(action__startswith="webhook.").order_by("pk")
                   .values_list("action", flat=True))
    assert actions == ["webhook.create", "webhook.update", "webhook.delete"]
    assert not any(secret in json.dumps(a.diff) for a in AuditEvent.objects.all())


@pytest.mark.parametrize(("body", "field"), [
    ({}, "url"), ({"url": 5}, "url"), ({"url": "https://example.com/", "events": []}, "events"),
    ({"url": "https://example.com/", "events": ["endpoint.exploded"]}, "events"),
    ({"url": "https://example.com/", "events": "endpoint.created"}, "events"),
    ({"url": "https://example.com/", "description": "x" * 257}, "description"),
])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(alice_api, body, field):
    r = expect(alice_api.post("/v2/webhooks/alice", body, format="json"), 400)
    assert field in r.json()["fields"], r.json()
    assert not WebhookSubscription.objects.exists() and not AuditEvent.objects.filter(action="webhook.create").exists()


def test_bad_patches_are_400s(alice_api, receiver):
    created = subscribe(alice_api, receiver().url)
    for body, field in (({"url": "http://10.1.2.3/"}, "url"), ({"enabled": "yes"}, "enabled"),
                        ({"events": ["nope"]}, "events")):
        r = expect(alice_api.patch(f"/v2/webhooks/alice/{created['id']}", body, format="json"), 400)
        assert field in r.json()["fields"], r.json()


def test_an_account_holds_at_most_the_configured_number_of_subscriptions(alice_api, receiver, settings):
    settings.MAX_WEBHOOKS_PER_ACCOUNT = 2
    hook = receiver()
    subscribe(alice_api, hook.url)
    subscribe(alice_api, hook.url)
    r = expect(alice_api.post("/v2/webhooks/alice", {"url": hook.url}, format="json"), 409)
    assert r.json()["code"] == "webhook_limit"


def test_auth_matrix(alice, alice_api, receiver):
    hook = receiver()
    created = subscribe(alice_api, hook.url)
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
    base = f"/v2/webhooks/alice/{created['id']}"
    writes = [("post", "/v2/webhooks/alice", {"url": hook.url}), ("patch", base, {"description": "x"}),
              ("delete", base, None), ("post", f"{base}/rotate-secret", None),
              ("post", f"{base}/deliveries/{delivery.pk}/redeliver", None)]
    reads = ["/v2/webhooks/alice", base, f"{base}/deliveries"]
    anonymous, reader = api_client(), user_api(alice, "read")
    bob = user_api(make_user("bob"))
    for path in reads:
        expect(anonymous.get(path), 401, path)
        expect(reader.get(path), 200, path)
        expect(bob.get(path), 404, path)
    for method, path, body in writes:
        expect(getattr(anonymous, method)(path, body, format="json"), 401, path)
        expect(getattr(reader, method)(path, body, format="json"), 403, path)
        expect(getattr(bob, method)(path, body, format="json"), 404, path)
    expect(alice_api.get("/v2/webhooks/alice/999999"), 404)
    # Organisations: read members read, write and admin members write.
    carol, dave = make_user("carol"), make_user("dave")
    make_org("acme", members={alice: "admin", carol: "read", dave: "write"})
    expect(user_api(carol).post("/v2/webhooks/acme", {"url": hook.url}, format="json"), 403)
    expect(user_api(carol).get("/v2/webhooks/acme"), 200)
    made = subscribe(user_api(dave), hook.url, namespace="acme")
    expect(alice_api.delete(f"/v2/webhooks/acme/{made['id']}"), 200)
    # Another account's subscription is not reachable through one's own namespace either.
    expect(alice_api.get(f"/v2/webhooks/acme/{created['id']}"), 404)
    assert WebhookSubscription.objects.filter(pk=created["id"]).exists()


def test_the_admin_lists_without_the_secret_and_redelivers_through_the_service(alice, alice_api, receiver):
    hook = receiver()
    created = subscribe(alice_api, hook.url)
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
    deliver(delivery.pk)
    admin = api_client(session_user=make_user("root", is_staff=True))
    for page in ("/admin/controlplane/webhooksubscription/",
                 f"/admin/controlplane/webhooksubscription/{created['id']}/change/",
                 "/admin/controlplane/webhookdelivery/", f"/admin/controlplane/webhookdelivery/{delivery.pk}/change/"):
        content = expect(admin.get(page), 200, page).content.decode()
        assert created["secret"] not in content and "secret_encrypted" not in content
    expect(admin.post("/admin/controlplane/webhookdelivery/", {"action": "redeliver", "_selected_action": [delivery.pk]}),
           302)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.manual) == ("pending", True)
    assert AuditEvent.objects.get(action="webhook.redeliver").actor_name == "root"


def test_the_sweep_finds_due_deliveries_and_prunes_old_finished_ones(alice, alice_api, receiver, settings):
    subscribe(alice_api, receiver().url)
    with transaction.atomic():
        done, waiting = events.emit_many(account=alice.personal_account, events=[
            ("endpoint.created", {}), ("endpoint.deleted", {})])
    assert set(deliveries_due()) == {done.pk, waiting.pk}
    deliver(done.pk)
    assert deliveries_due() == [waiting.pk]
    later = timezone.now() + timedelta(days=settings.WEBHOOK_RETENTION_DAYS + 1)
    assert deliveries_prune(now=later) == 1
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [waiting.pk], "pending ones stay"
    assert not WebhookAttempt.objects.exists()


def _self_signed(tmp_path, name: str = "localhost"):
    """A certificate for ``name`` (its own CA) and its key, as PEM files."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_verifies_the_certificate_against_the_urls_host_at_the_pinned_address(alice, alice_api, receiver,
                                                                                    settings, tmp_path):
    import ssl

    hook = receiver()
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    hook.server.socket = context.wrap_socket(hook.server.socket, server_side=True)
    created = subscribe(alice_api, f"https://localhost:{hook.port}/hook")
    hook.secret = created["secret"]
    with transaction.atomic():
        (delivery,) = events.emit(account=alice.personal_account, event_type="endpoint.created", data={})
    refused = deliver(delivery.pk)  # a certificate no trusted CA signed: nothing is sent
    assert refused.outcome == "network_error" and "CERTIFICATE_VERIFY_FAILED" in refused.error, refused.error
    assert hook.requests == []

    settings.WEBHOOK_CA_BUNDLE = str(cert)
    due_now(delivery)
    assert deliver(delivery.pk).outcome == "succeeded"  # verified for "localhost", though 127.0.0.1 was dialled
    assert hook.requests[0]["headers"]["host"] == f"localhost:{hook.port}" and hook.requests[0]["verified"]
    # (The certificate names only DNS:localhost: checked against the dialled 127.0.0.1 it would have failed.)


def test_budget_crossings_are_budget_threshold_events(alice, alice_api, receiver):
    from decimal import Decimal

    from django.db.models import F

    from endpoints.budgets import budgets_enforce
    from endpoints.models import CostHour
    from quotas.models import Budget
    from quotas.services import budget_set

    hook = receiver()
    hook.secret = subscribe(alice_api, hook.url, ["budget.threshold"])["secret"]
    account = alice.personal_account
    endpoint = endpoint_services.endpoint_create(account=account, actor=alice, spec=endpoint_spec("ep"))
    budget_set(account=account, monthly_limit=Decimal("100"), notify_percent=80, action=Budget.Action.REFUSE)
    now = timezone.now()

    def spend(dollars: str) -> None:
        row, _ = CostHour.objects.get_or_create(account=account, endpoint_name=endpoint.name,
                                                hour=now.replace(minute=0, second=0, microsecond=0))
        CostHour.objects.filter(pk=row.pk).update(cost=F("cost") + Decimal(dollars))

    spend("85")
    budgets_enforce(now=now)
    budgets_enforce(now=now)  # once per crossing
    spend("20")
    budgets_enforce(now=now)
    for delivery in WebhookDelivery.objects.order_by("pk"):
        deliver(delivery.pk)
    data = [json.loads(r["body"])["data"] for r in hook.requests]
    assert [(d["thresholdPercent"], d["spent"], d["limit"], d["action"]) for d in data] == [
        (80, 85.0, 100.0, None), (100, 105.0, 100.0, "refuse")]
    assert all(r["verified"] for r in hook.requests) and data[0]["namespace"] == "alice"


def test_the_reconcilers_lifecycle_reaches_the_subscriber(alice, alice_api, receiver, cluster, fake_kube, fake_hub):
    """Through a real reconcile against the fake API server: states the reconciler observed, then the delete
    it completes (the row removed by the teardown) as endpoint.deleted."""
    from tests.kube_helpers import converge

    hook = receiver()
    hook.secret = subscribe(alice_api, hook.url, ["endpoint.state_changed", "endpoint.deleted"])["secret"]
    endpoint = endpoint_services.endpoint_create(account=alice.personal_account, actor=alice, spec=endpoint_spec("ep"))
    converge(endpoint.pk, "running")
    endpoint_services.endpoint_delete(account=alice.personal_account, name="ep", actor=alice)
    converge(endpoint.pk, "gone")
    for delivery in WebhookDelivery.objects.order_by("pk"):
        deliver(delivery.pk)
    payloads = [json.loads(r["body"]) for r in hook.requests]
    states = [p["data"]["toState"] for p in payloads if p["type"] == "endpoint.state_changed"]
    assert states[0] == "pending" and "running" in states and states[-1] == "deleting", states
    assert payloads[-1]["type"] == "endpoint.deleted" and payloads[-1]["data"]["name"] == "ep"
    assert all(r["verified"] for r in hook.requests)
