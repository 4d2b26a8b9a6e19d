"""The operator console (``/admin/console/``): what the overview lists, one endpoint's page with its charts,
and actions that go through the services, behind the admin's login and permissions."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.models import AuditEvent
from deployments.models import Cluster
from deployments.observe import Observation
from deployments.status import status_record
from endpoints import services as endpoint_services
from endpoints.models import Endpoint, EndpointEvent, Intent, ReplicaChange, State
from quotas.models import QuotaRequest
from quotas.services import quota_request_create, quota_set
from tests.factories import endpoint_spec, make_user
from tests.helpers import expect

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = make_user("root", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def alice():
    user = make_user("alice")
    quota_set(account=user.personal_account, accelerator="cpu", limit=100)
    return user


def create(user, name: str, **overrides) -> Endpoint:
    return endpoint_services.endpoint_create(account=user.personal_account, spec=endpoint_spec(name, **overrides),
                                             actor=user)


def observe(endpoint: Endpoint, state: str, message: str, ready: int = 0, target: int = 1) -> Endpoint:
    """Record what a reconcile pass would (the reconciler's own status writer)."""
    endpoint.refresh_from_db()
    assert status_record(endpoint, endpoint.generation, Observation(state, message, ready, target), url=None)
    endpoint.refresh_from_db()
    return endpoint


def age(endpoint: Endpoint, minutes: int) -> None:
    """Move the endpoint's history ``minutes`` into the past."""
    past = timezone.now() - timedelta(minutes=minutes)
    Endpoint.objects.filter(pk=endpoint.pk).update(created_at=past)
    EndpointEvent.objects.filter(endpoint=endpoint).update(created_at=past)


def section(html: str, element_id: str) -> str:
    match = re.search(rf'<div class="module[^"]*" id="{element_id}">(.*?)</table></div>', html, re.S)
    assert match, f"no section {element_id}"
    return match.group(1)


def test_overview_lists_failures_and_stuck_endpoints_with_their_message_and_age(client, operator, alice):
    broken = observe(create(alice, "broken"), State.FAILED, "Image pull failed: manifest unknown")
    age(broken, 90)
    stuck = create(alice, "stuck")
    age(stuck, 30)  # pending for 30 minutes: beyond CONSOLE_STUCK_SECONDS (10 minutes)
    create(alice, "fresh")  # pending for a moment: not stuck
    observe(create(alice, "fine"), State.RUNNING, "Endpoint is running", ready=1)

    page = expect(client.get("/admin/console/"), 200).content.decode()
    trouble = section(page, "console-trouble")
    assert "Endpoints in trouble (2)" in trouble
    assert "alice/broken" in trouble and "Image pull failed: manifest unknown" in trouble
    assert "1\xa0hour, 30\xa0minutes" in trouble  # how long it has been failed
    assert "alice/stuck" in trouble and "30\xa0minutes" in trouble
    assert "alice/fresh" not in trouble and "alice/fine" not in trouble
    assert trouble.index("alice/broken") < trouble.index("alice/stuck")  # longest in trouble first


def test_overview_counts_states_per_cluster_with_what_the_probe_saw(client, operator, alice, cluster):
    Cluster.objects.filter(pk=cluster.pk).update(
        kubernetes_version="v1.35.2", contacted_at=timezone.now() - timedelta(minutes=2),
        capacity={"nodes": 3, "readyNodes": 2, "cpu": 23.5, "memoryGiB": 94.0, "gpu": 4, "neuron": 0})
    observe(create(alice, "a"), State.RUNNING, "running", ready=1)
    observe(create(alice, "b"), State.RUNNING, "running", ready=1)
    observe(create(alice, "c"), State.FAILED, "crash")
    create(alice, "elsewhere", provider={"region": "eu-west-1", "vendor": "aws"},
           compute={"instanceType": "intel-spr", "instanceSize": "x2"})

    clusters = section(expect(client.get("/admin/console/"), 200).content.decode(), "console-clusters")
    rows = re.findall(r"<tr>(.*?)</tr>", clusters, re.S)
    fake = next(r for r in rows if ">fake<" in r)
    assert "v1.35.2" in fake and "2\xa0minutes ago" in fake and "2 of 3" in fake and "94.0 GiB" in fake
    cells = re.findall(r'<td class="num[^"]*">(.*?)</td>', fake)
    counts = dict(zip([s for s in State.values] + ["total"], cells, strict=True))
    assert counts["running"] == "2" and counts["failed"] == "1" and counts["total"] == "<strong>3</strong>"
    orphan = next(r for r in rows if "aws/eu-west-1" in r)
    assert "no enabled cluster" in orphan and "<strong>1</strong>" in orphan


def test_overview_shows_accounts_nearest_their_quota_and_recent_events(client, operator, alice):
    bob = make_user("bob")
    quota_set(account=bob.personal_account, accelerator="cpu", limit=10)
    create(bob, "big", compute={"scaling": {"maxReplica": 2, "minReplica": 1}})  # 2 × 2 vCPUs of 10: 40 %
    create(alice, "small")  # 2 of 100: 2 %
    page = expect(client.get("/admin/console/"), 200).content.decode()
    nearest = section(page, "console-quotas")
    assert nearest.index(">bob<") < nearest.index(">alice<")
    assert "40%" in nearest and "2%" in nearest
    events = section(page, "console-events")
    assert "bob/big" in events and "alice/small" in events and "create" in events


def test_quota_requests_are_decided_from_the_overview_through_the_service(client, operator, alice):
    request = quota_request_create(account=alice.personal_account, accelerator="gpu", requested_limit=8,
                                   reason="a bigger model", actor=alice)
    page = expect(client.get("/admin/console/"), 200).content.decode()
    assert "a bigger model" in section(page, "console-quota-requests")
    expect(client.post(f"/admin/console/quota-request/{request.pk}/approve"), 302)
    request.refresh_from_db()
    assert (request.status, request.decided_by) == (QuotaRequest.Status.APPROVED, operator)
    assert alice.personal_account.quotas.get(accelerator="gpu").limit == 8
    again = client.post(f"/admin/console/quota-request/{request.pk}/reject", follow=True)
    assert "already approved" in expect(again, 200).content.decode()
    assert expect(client.post("/admin/console/quota-request/999999/approve", follow=True), 200)
    expect(client.post(f"/admin/console/quota-request/{request.pk}/maybe"), 404)


def test_endpoint_page_draws_the_replica_timeline_and_traffic_charts(client, operator, alice):
    endpoint = observe(create(alice, "web"), State.INITIALIZING, "starting", ready=0, target=2)
    observe(endpoint, State.RUNNING, "running", ready=2, target=2)
    assert list(ReplicaChange.objects.filter(endpoint=endpoint).values_list("ready", "target")) == [(0, 2), (2, 2)]
    page = expect(client.get(f"/admin/console/endpoint/{endpoint.pk}/"), 200).content.decode()
    charts = re.findall(r'<svg [^>]*class="console-chart".*?</svg>', page, re.S)
    titles = [re.search(r"<title>(.*?)</title>", c).group(1) for c in charts]
    assert titles == ["Replicas, last 24 hours", "Request rate, last hour", "Error rate (5xx), last hour",
                      "Latency, last hour"]
    assert "<polyline" in charts[0]  # the replica steps
    assert "running" in page and "2 ready of 2" in page


def test_actions_go_through_the_services(client, operator, alice):
    endpoint = observe(create(alice, "web"), State.RUNNING, "running", ready=1)
    url = f"/admin/console/endpoint/{endpoint.pk}"
    expect(client.post(f"{url}/pause"), 302)
    endpoint.refresh_from_db()
    assert (endpoint.intent, endpoint.state) == (Intent.PAUSE, State.PAUSED)
    event = EndpointEvent.objects.filter(endpoint=endpoint, kind="pause").get()
    assert event.actor == operator

    expect(client.post(f"{url}/resume"), 302)
    again = client.post(f"{url}/resume", follow=True)  # already running: the service refuses, the page says so
    assert "already" in expect(again, 200).content.decode().lower()
    expect(client.post(f"{url}/scale-to-zero"), 302)
    assert Endpoint.objects.get(pk=endpoint.pk).state == State.SCALED_TO_ZERO

    expect(client.get(f"{url}/pause"), 405)  # never on a GET
    expect(client.post(f"{url}/explode"), 404)
    gone = expect(client.post(f"{url}/delete"), 302)  # never applied to a cluster: the row goes at once
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists() and gone["Location"] == "/admin/console/"
    assert AuditEvent.objects.filter(action="endpoint.delete", actor=operator, target="web").exists()


def test_the_console_needs_the_admins_login_and_permissions(client, alice):
    endpoint = create(alice, "web")
    expect(client.get("/admin/console/"), 302)  # to the admin's login
    assert client.get("/admin/console/")["Location"].startswith("/admin/login/")
    client.force_login(alice)  # not staff
    expect(client.get("/admin/console/"), 302)

    viewer = make_user("viewer", is_staff=True)
    type(viewer).objects.filter(pk=viewer.pk).update(is_superuser=False)  # staff, with no permission yet
    client.force_login(viewer)
    expect(client.get("/admin/console/"), 403)  # staff without the view permission
    viewer.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    viewer = type(viewer).objects.get(pk=viewer.pk)
    client.force_login(viewer)
    expect(client.get("/admin/console/"), 200)
    expect(client.get(f"/admin/console/endpoint/{endpoint.pk}/"), 200)
    expect(client.post(f"/admin/console/endpoint/{endpoint.pk}/pause"), 403)  # viewing is not changing
    assert Endpoint.objects.get(pk=endpoint.pk).intent == Intent.RUN


@pytest.mark.parametrize("extra", [0, 9_990])
def test_the_overview_costs_the_same_queries_at_10_and_10000_endpoints(client, operator, alice, extra):
    """Ten endpoints made through the service (events, failures), then ``extra`` more rows in bulk."""
    for i in range(10):
        endpoint = create(alice, f"ep-{i}")
        if i % 3 == 0:
            observe(endpoint, State.FAILED, "crash")
    if extra:
        template = Endpoint.objects.get(name="ep-1")
        Endpoint.objects.bulk_create([Endpoint(account=template.account, instance=template.instance, name=f"b{i}",
                                               repository="gpt2", framework="pytorch", state=State.FAILED
                                               if i % 100 == 0 else State.RUNNING) for i in range(extra)],
                                     batch_size=2000)
    client.get("/admin/console/")  # warm per-process caches (content types)
    with CaptureQueriesContext(connection) as queries:
        page = expect(client.get("/admin/console/"), 200).content.decode()
    assert f"Endpoints in trouble ({4 + len(range(0, extra, 100))})" in page
    assert len(queries) == OVERVIEW_QUERIES, "\n".join(q["sql"][:200] for q in queries.captured_queries)


# The session and its user, then the overview's own: clusters, states per region, the trouble list and its
# count, quotas nearest their limit, pending quota requests, recent events.
OVERVIEW_QUERIES = 9


def test_the_endpoint_page_survives_redis_being_down(client, operator, alice, settings):
    endpoint = observe(create(alice, "web"), State.RUNNING, "running", ready=1)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there (the client is cached per URL)
    page = expect(client.get(f"/admin/console/endpoint/{endpoint.pk}/"), 200).content.decode()
    assert "traffic figures cannot be read" in page and "1 ready of 1" in page


def test_the_endpoint_page_draws_what_the_gateway_counted(client, operator, alice, gateway_prefix, settings):
    """Counts written by the gateway's own flusher (30 answers, 3 of them 5xx) reach the page's figures
    and charts."""
    import asyncio

    import redis.asyncio

    from controlplane.traffic import status_class
    from gateway.traffic import Traffic

    endpoint = observe(create(alice, "web"), State.RUNNING, "running", ready=1)

    async def serve() -> None:
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        traffic = Traffic(client, gateway_prefix, interval=5)
        slots = traffic.counters(endpoint.pk)
        for i in range(30):
            traffic.begin(slots)
            traffic.end(slots, status_class(500 if i % 10 == 0 else 200), 0.02 if i % 2 else 0.2)
        assert await traffic.flush()
        await client.aclose()

    asyncio.run(serve())
    page = expect(client.get(f"/admin/console/endpoint/{endpoint.pk}/"), 200).content.decode()
    assert "<dt>Requests, last hour</dt><dd>30</dd>" in page
    charts = dict(re.findall(r'<svg [^>]*class="console-chart"[^>]*><title>(.*?)</title>(.*?)</svg>', page, re.S))
    for title in ("Request rate, last hour", "Error rate (5xx), last hour", "Latency, last hour"):
        assert "no data in this window" not in charts[title] and ("<circle" in charts[title]
                                                                  or "<polyline" in charts[title]), title
    assert ">10<" in charts["Error rate (5xx), last hour"]  # 3 of 30: the 10 % gridline is the top
