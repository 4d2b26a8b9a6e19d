"""The cost ledger and budgets: accrual from observed replicas (checked against an independent sum over
random timelines), the cost API and the endpoint's status, and a budget's actions."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.models import AuditEvent
from endpoints import services as endpoint_services
from endpoints.budgets import budgets_enforce
from endpoints.costs import costs_accrue, costs_close
from endpoints.locks import LEDGER_KEY
from endpoints.models import CostCursor, CostHour, Endpoint, Intent, ReplicaChange, State
from quotas.models import Budget
from quotas.services import budget_set, quota_set
from tests.factories import endpoint_spec, make_org, make_user
from tests.helpers import expect, user_api

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 30, 22, 17, 3, tzinfo=UTC)  # near a month's end, so timelines cross into the next


@pytest.fixture
def alice():
    user = make_user("alice")
    quota_set(account=user.personal_account, accelerator="cpu", limit=200)
    return user


def create(user, name: str, account=None, **overrides) -> Endpoint:
    return endpoint_services.endpoint_create(account=account or user.personal_account, actor=user,
                                             spec=endpoint_spec(name, **overrides))


def steps(endpoint: Endpoint, timeline: list[tuple[datetime, int]]) -> None:
    """Replica changes at given instants, as the reconciler's status writer records them."""
    ReplicaChange.objects.bulk_create([ReplicaChange(endpoint=endpoint, at=at, ready=n, target=n) for at, n in timeline])


def price(endpoint: Endpoint) -> Decimal:
    return endpoint.instance.price_per_hour


# ---------------------------------------------------------------- the ledger against an independent sum

def integrate(timeline: list[tuple[datetime, int]], end: datetime) -> dict[datetime, float]:
    """Ready-replica-seconds per hour, second by second in spirit: each interval between changes, cut at
    every hour boundary by walking whole hours (a different method from the ledger's)."""
    per_hour: dict[datetime, float] = {}
    for (at, n), (nxt, _) in zip(timeline, [*timeline[1:], (end, 0)], strict=True):
        hour = at.replace(minute=0, second=0, microsecond=0)
        while hour < nxt:
            lo, hi = max(at, hour), min(nxt, hour + timedelta(hours=1))
            if hi > lo and n:
                per_hour[hour] = per_hour.get(hour, 0.0) + n * (hi - lo).total_seconds()
            hour += timedelta(hours=1)
    return per_hour


timelines = st.lists(st.tuples(st.integers(1, 7200), st.integers(0, 5)), min_size=1, max_size=12)
accruals = st.lists(st.integers(0, 100_000), max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timeline=timelines, accrual_points=accruals, tail=st.integers(0, 5000))
def test_ledger_equals_an_independent_sum_over_random_timelines(alice, timeline, accrual_points, tail):
    endpoint = Endpoint.objects.filter(name="prop").first() or create(alice, "prop")
    CostHour.objects.all().delete(), CostCursor.objects.all().delete(), ReplicaChange.objects.all().delete()
    at, changes = T0, []
    for gap, n in timeline:
        changes.append((at, n))
        at += timedelta(seconds=gap)
    end = at + timedelta(seconds=tail)
    steps(endpoint, changes)
    for offset in sorted(accrual_points):  # accruals at arbitrary moments, some before any change
        costs_accrue(now=T0 + timedelta(seconds=offset * (end - T0).total_seconds() / 100_000))
    costs_accrue(now=end)

    expected = integrate(changes, end)
    ledger = {row.hour: row for row in CostHour.objects.filter(endpoint_name="prop")}
    assert set(ledger) == set(expected)
    runs = len(accrual_points) + 1
    for hour, seconds in expected.items():
        assert ledger[hour].replica_seconds == pytest.approx(seconds, abs=1e-6)
        exact = Decimal(seconds) * price(endpoint) / 3600
        assert abs(ledger[hour].cost - exact) <= Decimal("0.000001") * runs  # each addition rounds to 1e-6


def test_accruing_twice_to_the_same_moment_adds_nothing(alice):
    endpoint = create(alice, "web")
    steps(endpoint, [(T0, 2)])
    costs_accrue(now=T0 + timedelta(minutes=30))
    before = list(CostHour.objects.values_list("hour", "replica_seconds", "cost"))
    assert costs_accrue(now=T0 + timedelta(minutes=30)) == 0
    assert list(CostHour.objects.values_list("hour", "replica_seconds", "cost")) == before
    assert [row[:2] for row in before] == [(T0.replace(minute=0, second=0), 2 * 30 * 60.0)]


def test_a_second_accrual_at_once_gives_way(alice, transactional_db):
    """While one run holds the ledger (another connection), a beat run does nothing rather than wait."""
    endpoint = create(alice, "web")
    steps(endpoint, [(T0, 1)])
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("BEGIN; SELECT pg_advisory_xact_lock(%s)", [LEDGER_KEY])
            held.set()
            release.wait(10)
            cursor.execute("COMMIT")
        connections["default"].close()

    other = threading.Thread(target=hold)
    other.start()
    assert held.wait(10)
    try:
        assert costs_accrue(now=T0 + timedelta(hours=1)) == 0
    finally:
        release.set()
        other.join()
    assert costs_accrue(now=T0 + timedelta(hours=1)) == 1


def test_paused_and_scaled_to_zero_time_costs_nothing_and_says_so(alice):
    endpoint = create(alice, "web")
    steps(endpoint, [(T0, 1), (T0 + timedelta(minutes=20), 0), (T0 + timedelta(minutes=50), 1)])
    costs_accrue(now=T0 + timedelta(minutes=60))
    total = sum(row.replica_seconds for row in CostHour.objects.all())
    assert total == 30 * 60  # 20 minutes, then 10: the 30 minutes at zero cost nothing

    endpoint_services.endpoint_pause(account=alice.personal_account, name="web", actor=alice)
    Endpoint.objects.filter(pk=endpoint.pk).update(ready_replica=0)
    body = expect(user_api(alice).get("/v2/endpoint/alice/web"), 200).json()
    assert body["status"]["cost"]["accruing"] is False
    assert body["status"]["cost"]["note"] == "Paused: no replica runs, nothing accrues"


def test_the_status_shows_this_months_cost_and_the_api_reports_by_endpoint_and_day(alice):
    from django.utils import timezone

    now = timezone.now()
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    web, api = create(alice, "web"), create(alice, "api")
    steps(web, [(month - timedelta(hours=1), 2)])  # an hour of last month, then this month's
    steps(api, [(month + timedelta(minutes=5), 1), (month + timedelta(minutes=35), 0)])
    costs_accrue(now=now)

    client = user_api(alice)
    listed = {e["name"]: e["status"]["cost"] for e in expect(client.get("/v2/endpoint/alice"), 200).json()["items"]}
    this_month = {name: sum(r.cost for r in CostHour.objects.filter(endpoint_name=name, hour__gte=month))
                  for name in ("web", "api")}
    assert listed["web"]["monthToDate"] == pytest.approx(float(this_month["web"]))
    assert listed["api"]["monthToDate"] == pytest.approx(float(this_month["api"])) and this_month["api"] > 0
    assert listed["web"]["currency"] == "USD" and listed["web"]["pricePerHour"] == float(price(web))

    report = expect(client.get("/v2/costs/alice", {"groupBy": "endpoint"}), 200).json()
    assert report["from"].startswith(month.strftime("%Y-%m-%dT00:00:00"))
    by_name = {item["endpoint"]: item for item in report["items"]}
    assert by_name["api"]["replicaHours"] == pytest.approx(0.5)
    assert Decimal(str(report["total"])) == pytest.approx(this_month["web"] + this_month["api"])

    whole = expect(client.get("/v2/costs/alice", {"from": (month - timedelta(days=1)).isoformat(),
                                                 "to": now.isoformat(), "groupBy": "day"}), 200).json()
    days = [item["day"] for item in whole["items"]]
    assert days[0] == (month - timedelta(hours=1)).date().isoformat() and len(days) == len(set(days))
    assert Decimal(str(whole["total"])) == pytest.approx(sum(r.cost for r in CostHour.objects.all()))


@pytest.mark.parametrize(("query", "field"), [({"groupBy": "hour"}, "groupBy"), ({"from": "yesterday"}, "from"),
                                              ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to")])
def test_a_bad_report_query_names_its_field(alice, query, field):
    body = expect(user_api(alice).get("/v2/costs/alice", query), 400).json()
    assert field in body["fields"], body


def test_costs_are_the_accounts_own(alice):
    expect(user_api(make_user("mallory")).get("/v2/costs/alice"), 404)
    expect(user_api(make_user("carol")).get("/v2/budgets/alice"), 404)


def test_a_deleted_endpoints_last_hours_are_accrued_and_kept(alice):
    endpoint = create(alice, "gone")
    steps(endpoint, [(T0, 3)])
    costs_accrue(now=T0 + timedelta(minutes=10))
    costs_close(endpoint=endpoint)  # what the reconciler runs before deleting the row
    endpoint.delete()
    assert ReplicaChange.objects.count() == 0  # they went with the row; the ledger stayed
    total = sum(row.replica_seconds for row in CostHour.objects.filter(endpoint_name="gone"))
    assert total >= 3 * 10 * 60 and CostHour.objects.filter(endpoint_name="gone").count() >= 2


# ---------------------------------------------------------------- budgets

def spend(endpoint: Endpoint, dollars: str, now) -> None:
    """Ledger rows worth ``dollars`` this month for ``endpoint``."""
    row, _ = CostHour.objects.get_or_create(account=endpoint.account, endpoint_name=endpoint.name,
                                            hour=now.replace(minute=0, second=0, microsecond=0))
    CostHour.objects.filter(pk=row.pk).update(cost=F("cost") + Decimal(dollars), replica_seconds=F("replica_seconds") + 3600)


def test_crossing_the_budget_pauses_exactly_the_non_essential_endpoints(alice):
    from django.utils import timezone

    now = timezone.now()
    org = make_org("acme", members={alice: "admin"})
    quota_set(account=org, accelerator="cpu", limit=100)
    web = create(alice, "web", account=org)
    create(alice, "db", account=org, tags=["essential", "prod"])
    create(alice, "batch", account=org)
    create(alice, "mine")  # alice's own account: another budget's business
    endpoint_services.endpoint_pause(account=org, name="batch", actor=alice)  # already paused: left alone
    budget_set(account=org, monthly_limit=Decimal("100"), notify_percent=80, action=Budget.Action.PAUSE)

    spend(web, "79.99", now)
    assert budgets_enforce(now=now).notified == []
    spend(web, "0.02", now)  # 80.01 %: the notice, once
    first = budgets_enforce(now=now)
    assert first.notified == ["acme"] and first.paused == []
    assert budgets_enforce(now=now).notified == []
    assert AuditEvent.objects.filter(action="budget.threshold", account=org).count() == 1

    spend(web, "20", now)
    done = budgets_enforce(now=now)
    assert done.exhausted == ["acme"] and done.paused == ["acme/web"]
    states = dict(Endpoint.objects.filter(account=org).values_list("name", "intent"))
    assert states == {"web": Intent.PAUSE, "db": Intent.RUN, "batch": Intent.PAUSE}
    assert Endpoint.objects.get(account=org, name="web").message == "Endpoint paused: the account's monthly budget is spent"
    assert Endpoint.objects.get(name="mine").intent == Intent.RUN
    assert budgets_enforce(now=now).paused == []  # once a month: resuming by hand is the operator's choice


def test_a_refusing_budget_refuses_scale_ups_only(alice):
    from django.utils import timezone

    now = timezone.now()
    web = create(alice, "web", compute={"scaling": {"minReplica": 1, "maxReplica": 3}})
    create(alice, "idle")
    endpoint_services.endpoint_pause(account=alice.personal_account, name="idle", actor=alice)
    budget_set(account=alice.personal_account, monthly_limit=Decimal("10"), action=Budget.Action.REFUSE)
    spend(web, "10", now)
    assert budgets_enforce(now=now).exhausted == ["alice"]

    client = user_api(alice)
    body = expect(client.post("/v2/endpoint/alice", endpoint_spec("more"), format="json"), 403).json()
    assert body["code"] == "budget_exhausted"
    assert expect(client.post("/v2/endpoint/alice/idle/resume"), 403).json()["code"] == "budget_exhausted"
    raise_it = {"compute": {"scaling": {"maxReplica": 4}}}
    assert expect(client.put("/v2/endpoint/alice/web", raise_it, format="json"), 403).json()["code"] == "budget_exhausted"
    lower = {"compute": {"scaling": {"maxReplica": 2}}}
    expect(client.put("/v2/endpoint/alice/web", lower, format="json"), 200)  # holding less is always allowed
    assert not Endpoint.objects.filter(name="more").exists()

    budget_set(account=alice.personal_account, monthly_limit=Decimal("50"), action=Budget.Action.REFUSE)
    expect(client.post("/v2/endpoint/alice/idle/resume"), 200)  # a raised budget lifts the refusal
    assert Endpoint.objects.get(name="idle").state == State.PENDING


def test_the_budget_api(alice):
    client = user_api(alice)
    expect(client.get("/v2/budgets/alice"), 404)
    bad = expect(client.put("/v2/budgets/alice", {"monthlyLimit": "0", "action": "explode"}, format="json"), 400)
    assert {"monthlyLimit", "action"} <= set(bad.json()["fields"])
    body = expect(client.put("/v2/budgets/alice", {"monthlyLimit": "250.5", "action": "pause"}, format="json"),
                  200).json()
    assert body == {"monthlyLimit": 250.5, "notifyPercent": 80, "action": "pause", "currency": "USD",
                    "spentThisMonth": 0, "notified": False, "exhausted": False}
    assert expect(client.get("/v2/budgets/alice"), 200).json() == body
    assert AuditEvent.objects.filter(action="budget.set", account=alice.personal_account).count() == 1

    reader = user_api(alice, role="read")
    expect(reader.get("/v2/budgets/alice"), 200)
    expect(reader.put("/v2/budgets/alice", {"monthlyLimit": "1"}, format="json"), 403)
    bob = make_user("bob")
    org = make_org("acme", members={alice: "admin", bob: "write"})
    expect(user_api(bob).put(f"/v2/budgets/{org.slug}", {"monthlyLimit": "5"}, format="json"), 403)  # admins only
    expect(client.delete("/v2/budgets/alice"), 200)
    expect(client.delete("/v2/budgets/alice"), 404)


def test_the_console_charts_each_accounts_spend_against_its_budget(client, alice):
    from django.utils import timezone

    now = timezone.now()
    operator = make_user("root", is_staff=True)
    client.force_login(operator)
    web = create(alice, "web")
    spend(web, "30", now)
    budget_set(account=alice.personal_account, monthly_limit=Decimal("120"), action=Budget.Action.PAUSE)
    bob = make_user("bob")
    spend(create(bob, "x"), "45.5", now)
    page = expect(client.get("/admin/console/costs/"), 200).content.decode()
    assert page.index("bob: 45.50 USD this month, no budget") < page.index("alice: 30.00 USD this month of 120.00")
    assert "(25 %, at 100 %: pause non-essential endpoints)" in page
    assert page.count('class="console-chart"') == 2
