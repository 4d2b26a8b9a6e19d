"""Scheduled scaling (``compute.scaling.schedules``): the cron parser and its DST rule, the window rule, the
API's validation and quota admission, and beat applying windows to the HPA on the fake Kubernetes API.

Every clock here is explicit: the pure functions and ``schedules_apply`` take ``now``.
"""

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.db.models import F

from deployments.reconcile import Retry, endpoint_reconcile
from endpoints import services
from endpoints.cron import CronError, cron_parse, fire_after, fire_before, fire_instant
from endpoints.idle import idle_candidates
from endpoints.models import Endpoint, EndpointEvent
from endpoints.quota import quota_usage
from endpoints.schedule_sweep import scheduled_endpoints, schedules_apply
from endpoints.schedules import InForce, held_replica, scaling_in_force
from endpoints.spec import endpoint_body
from quotas.services import quota_set
from tests.factories import endpoint_spec, make_user
from tests.helpers import expect
from tests.kube_helpers import NS, converge, create, deployment

PARIS = ZoneInfo("Europe/Paris")
# Weekdays 08:00-18:00 in Paris: 2-6 replicas; the base is 1-2.
OFFICE = {"cron": "0 8 * * 1-5", "timezone": "Europe/Paris", "durationMinutes": 600, "minReplica": 2, "maxReplica": 6}
BASE = {"minReplica": 1, "maxReplica": 2}


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def scaling(*schedules, **base) -> dict:
    return {**BASE, **base, "schedules": list(schedules)}


# ---------------------------------------------------------------- cron
@pytest.mark.parametrize("expression", [
    "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *",
    "5-1 * * * *", "a * * * *", "1,,2 * * * *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "-1 * * * *", "٣ * * * *", "",
])
def test_bad_cron_expressions_are_refused(expression):
    with pytest.raises(CronError):
        cron_parse(expression)


def test_cron_fields_names_steps_lists_and_sunday_as_seven():
    cron = cron_parse("*/15 9-17/4 1,15 jan-mar MON-fri")
    assert cron.minutes == (0, 15, 30, 45) and cron.hours == (9, 13, 17)
    assert cron.months == {1, 2, 3} and cron.weekdays == {1, 2, 3, 4, 5} and cron.either_day
    assert cron_parse("0 0 * * 7").weekdays == cron_parse("0 0 * * 0").weekdays == {0}
    assert cron_parse("5/20 * * * *").minutes == (5, 25, 45)
    assert cron_parse("0 0 29 2 *").days == {29}  # fires in leap years only, which is enough


def test_either_day_field_matches_when_both_are_restricted():
    first_or_monday = cron_parse("0 12 1 * 1")
    start = utc(2026, 6, 1)  # a Monday, and the 1st
    fires = []
    moment = start
    while (moment := fire_after(first_or_monday, ZoneInfo("UTC"), moment, latest=utc(2026, 7, 2))) is not None:
        fires.append(moment.day)
    assert fires == [1, 8, 15, 22, 29, 1]
    every_monday_of_the_month = cron_parse("0 12 */1 * 1")  # day field starts with '*': both must match
    assert fire_after(every_monday_of_the_month, ZoneInfo("UTC"), utc(2026, 6, 2), latest=utc(2026, 7, 1)) == \
        utc(2026, 6, 8, 12)


def test_fire_times_follow_the_zone_across_daylight_saving_changes():
    eight = cron_parse("0 8 * * *")
    assert fire_after(eight, PARIS, utc(2026, 3, 28), latest=utc(2026, 4, 1)) == utc(2026, 3, 28, 7)  # CET
    assert fire_after(eight, PARIS, utc(2026, 3, 29), latest=utc(2026, 4, 1)) == utc(2026, 3, 29, 6)  # CEST
    # 02:30 does not exist on 29 March 2026 in Paris: the fire is at the jump, 02:00 CET = 01:00 UTC.
    assert fire_instant(datetime(2026, 3, 29, 2, 30), PARIS) == utc(2026, 3, 29, 1)
    half_two = cron_parse("30 2 * * *")
    assert fire_after(half_two, PARIS, utc(2026, 3, 28, 12), latest=utc(2026, 4, 1)) == utc(2026, 3, 29, 1)
    # 02:30 happens twice on 25 October 2026: it fires once, at the first (CEST, 00:30 UTC).
    assert fire_after(half_two, PARIS, utc(2026, 10, 24, 12), latest=utc(2026, 11, 1)) == utc(2026, 10, 25, 0, 30)
    assert fire_after(half_two, PARIS, utc(2026, 10, 25, 0, 30), latest=utc(2026, 11, 1)) == utc(2026, 10, 26, 1, 30)
    assert fire_before(half_two, PARIS, utc(2026, 10, 25, 1, 45), earliest=utc(2026, 10, 24)) == utc(2026, 10, 25, 0, 30)
    assert fire_before(half_two, PARIS, utc(2026, 10, 25, 0, 29), earliest=utc(2026, 10, 25)) is None  # bounded


# ---------------------------------------------------------------- the window rule
def test_a_window_opens_at_its_fire_and_closes_after_its_duration():
    spec = scaling(OFFICE)
    monday = paris(2026, 6, 1, 8)
    assert scaling_in_force(spec, monday - timedelta(seconds=1)) == InForce(None, 1, 2, next_change=monday)
    assert scaling_in_force(spec, monday) == InForce(0, 2, 6, next_change=paris(2026, 6, 1, 18))
    assert scaling_in_force(spec, paris(2026, 6, 1, 17, 59)).active == 0
    assert scaling_in_force(spec, paris(2026, 6, 1, 18)) == InForce(None, 1, 2, next_change=paris(2026, 6, 2, 8))
    friday_evening = paris(2026, 6, 5, 18)
    assert scaling_in_force(spec, friday_evening).next_change == paris(2026, 6, 8, 8)  # the weekend is base
    assert scaling_in_force(scaling(), monday) == InForce(None, 1, 2)


def test_duration_is_elapsed_time_across_a_daylight_saving_change():
    night = {"cron": "0 22 * * *", "timezone": "Europe/Paris", "durationMinutes": 600, "minReplica": 0,
             "maxReplica": 1}
    # 22:00 CET on 28 March + 10 h = 08:00 UTC... which is 10:00 CEST by the wall clock.
    state = scaling_in_force(scaling(night), paris(2026, 3, 28, 23))
    assert state.active == 0 and state.next_change == utc(2026, 3, 29, 7)
    assert state.next_change.astimezone(PARIS).hour == 9


def test_overlapping_windows_the_latest_started_wins_then_the_earlier_resumes():
    day = {"cron": "0 8 * * *", "timezone": "Europe/Paris", "durationMinutes": 600, "minReplica": 2, "maxReplica": 4}
    lunch = {"cron": "0 12 * * *", "timezone": "Europe/Paris", "durationMinutes": 120, "minReplica": 5,
             "maxReplica": 8}
    spec = scaling(lunch, day)  # the order in the list does not matter: starts do
    assert scaling_in_force(spec, paris(2026, 6, 1, 11)) == InForce(1, 2, 4, next_change=paris(2026, 6, 1, 12))
    assert scaling_in_force(spec, paris(2026, 6, 1, 12)) == InForce(0, 5, 8, next_change=paris(2026, 6, 1, 14))
    assert scaling_in_force(spec, paris(2026, 6, 1, 14)) == InForce(1, 2, 4, next_change=paris(2026, 6, 1, 18))
    assert scaling_in_force(spec, paris(2026, 6, 1, 18)).active is None
    # Two windows starting at once: the one listed later wins.
    same = {**day, "minReplica": 3}
    assert scaling_in_force(scaling(day, same), paris(2026, 6, 1, 9)).active == 1
    assert scaling_in_force(scaling(same, day), paris(2026, 6, 1, 9)).active == 1


def test_a_window_that_restarts_before_it_ends_stays_in_force():
    hourly = {"cron": "0 * * * *", "timezone": "UTC", "durationMinutes": 90, "minReplica": 3, "maxReplica": 3}
    until_noon = {"cron": "0 0-11 * * *", "timezone": "UTC", "durationMinutes": 90, "minReplica": 3, "maxReplica": 3}
    assert scaling_in_force(scaling(hourly), utc(2026, 6, 1, 10, 45)).next_change is None  # always on
    assert scaling_in_force(scaling(until_noon), utc(2026, 6, 1, 10, 45)) == InForce(
        0, 3, 3, next_change=utc(2026, 6, 1, 12, 30))


def test_the_holding_is_the_largest_max_replica_of_base_and_windows():
    assert held_replica(scaling()) == 2
    assert held_replica(scaling(OFFICE, {**OFFICE, "maxReplica": 9})) == 9
    assert held_replica(scaling({**OFFICE, "maxReplica": 1}, maxReplica=3)) == 3


# ---------------------------------------------------------------- the API
def post(api, **overrides):
    return api.post("/v2/endpoint/alice", endpoint_spec("sched", **overrides), format="json")


def with_schedules(*schedules) -> dict:
    return {"compute": {"scaling": {"schedules": list(schedules)}}}


@pytest.mark.parametrize(("schedule", "field"), [
    ({**OFFICE, "cron": "0 8 * *"}, "compute.scaling.schedules.0.cron"),
    ({**OFFICE, "cron": "0 25 * * *"}, "compute.scaling.schedules.0.cron"),
    ({**OFFICE, "cron": 8}, "compute.scaling.schedules.0.cron"),
    ({**OFFICE, "timezone": "Europe/Atlantis"}, "compute.scaling.schedules.0.timezone"),
    ({**OFFICE, "timezone": "../../etc/passwd"}, "compute.scaling.schedules.0.timezone"),
    ({**OFFICE, "minReplica": 7}, "compute.scaling.schedules.0.maxReplica"),
    ({**OFFICE, "maxReplica": 0}, "compute.scaling.schedules.0.maxReplica"),
    ({**OFFICE, "durationMinutes": 0}, "compute.scaling.schedules.0.durationMinutes"),
    ({k: v for k, v in OFFICE.items() if k != "durationMinutes"}, "compute.scaling.schedules.0.durationMinutes"),
])
def test_invalid_schedules_are_400_naming_the_field(alice_api, schedule, field):
    r = expect(post(alice_api, **with_schedules(schedule)), 400)
    assert field in r.json()["fields"], r.json()
    r = expect(post(alice_api, **with_schedules(OFFICE, schedule)), 400)
    assert field.replace(".0.", ".1.") in r.json()["fields"], r.json()
    assert not Endpoint.objects.exists()


def test_more_schedules_than_the_setting_allows_are_refused(alice_api, settings):
    r = expect(post(alice_api, **with_schedules(*[OFFICE] * (settings.SCALING_SCHEDULES_MAX + 1))), 400)
    assert "compute.scaling.schedules" in r.json()["fields"], r.json()
    expect(post(alice_api, **with_schedules(*[OFFICE] * settings.SCALING_SCHEDULES_MAX)), 202)


def test_schedules_are_shown_stored_and_replaced_whole_by_an_update(alice_api):
    body = expect(post(alice_api, **with_schedules({k: v for k, v in OFFICE.items() if k != "timezone"})), 202).json()
    assert body["compute"]["scaling"]["schedules"] == [{**OFFICE, "timezone": "UTC"}]
    assert body["status"]["scaling"].keys() == {"activeSchedule", "minReplica", "maxReplica", "nextChange"}
    night = {"cron": "0  22 * * *", "durationMinutes": 60, "minReplica": 0, "maxReplica": 1}
    r = expect(alice_api.put("/v2/endpoint/alice/sched", with_schedules(night, OFFICE), format="json"), 200)
    assert r.json()["compute"]["scaling"]["schedules"] == [{**night, "cron": "0 22 * * *", "timezone": "UTC"}, OFFICE]
    generation = Endpoint.objects.get().generation
    expect(alice_api.put("/v2/endpoint/alice/sched", {"compute": {"scaling": {"maxReplica": 2}}}, format="json"), 200)
    assert len(Endpoint.objects.get().scaling_schedules) == 2  # a merge elsewhere keeps the list
    expect(alice_api.put("/v2/endpoint/alice/sched", with_schedules(night, OFFICE), format="json"), 200)
    assert Endpoint.objects.get().generation == generation + 1  # the same list again changes nothing
    update = EndpointEvent.objects.filter(kind="update").first()
    assert list(update.diff) == ["compute.scaling.schedules"]
    r = expect(alice_api.put("/v2/endpoint/alice/sched", with_schedules(), format="json"), 200)
    assert r.json()["compute"]["scaling"]["schedules"] == []
    assert r.json()["status"]["scaling"] == {"activeSchedule": None, "minReplica": 1, "maxReplica": 2,
                                             "nextChange": None}


def test_a_window_over_quota_is_403_at_admission_and_writes_nothing(alice, alice_api):
    quota_set(account=alice.personal_account, accelerator="cpu", limit=8)  # intel-spr x2: 2 vCPUs a replica
    r = expect(post(alice_api, **with_schedules({**OFFICE, "maxReplica": 3}, {**OFFICE, "maxReplica": 5})), 403)
    assert r.json()["code"] == "quota_exceeded" and r.json()["need"] == 10, r.json()
    assert not Endpoint.objects.exists() and not EndpointEvent.objects.exists()
    expect(post(alice_api, **with_schedules({**OFFICE, "maxReplica": 3})), 202)
    assert quota_usage(account=alice.personal_account)["cpu"] == 6  # the largest window is held, not the base 1
    holding = alice_api.get("/v2/quotas/alice").json()["endpoints"][0]
    assert (holding["maxReplica"], holding["heldReplica"], holding["units"]) == (1, 3, 6)
    # Another endpoint sees the window's holding, and an update that grows a window is admitted again.
    r = expect(alice_api.post("/v2/endpoint/alice", endpoint_spec("other", compute={"scaling": {"maxReplica": 2}}),
                              format="json"), 403)
    assert r.json()["usage"] == 6, r.json()
    r = expect(alice_api.put("/v2/endpoint/alice/sched", with_schedules({**OFFICE, "maxReplica": 5}), format="json"),
               403)
    assert r.json()["code"] == "quota_exceeded", r.json()
    assert Endpoint.objects.get().scaling_schedules == [{**OFFICE, "maxReplica": 3}]
    expect(alice_api.put("/v2/endpoint/alice/sched", with_schedules({**OFFICE, "maxReplica": 4}), format="json"), 200)
    assert quota_usage(account=alice.personal_account)["cpu"] == 8


# ---------------------------------------------------------------- beat
def queued_reconciles(broker) -> list[int]:
    ids = []
    for raw in broker.messages():
        message = json.loads(raw)
        assert message["headers"]["task"] == "workers.reconcile_endpoint"
        ids.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return ids


def make(user, name, *schedules, **scaling_base):
    return services.endpoint_create(account=user.personal_account, actor=user, spec=endpoint_spec(
        name, compute={"scaling": {**BASE, **scaling_base, "schedules": list(schedules)}}))


def test_beat_queues_reconciles_only_where_the_bounds_changed(alice, broker, django_capture_on_commit_callbacks,
                                                              django_assert_num_queries):
    same_bounds = {**OFFICE, "minReplica": 1, "maxReplica": 2}
    evening = {**OFFICE, "cron": "0 20 * * *"}
    flips, same = make(alice, "flips", OFFICE), make(alice, "same", same_bounds)
    make(alice, "stays", evening)
    make(alice, "plain")
    sunday = paris(2026, 5, 31, 12)
    with django_capture_on_commit_callbacks(execute=True):
        schedules_apply(now=sunday)  # whatever the real clock said at create: base everywhere now
    broker.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules_apply(now=sunday) == []
    with django_assert_num_queries(1):  # nothing moved: one read, no write
        schedules_apply(now=sunday + timedelta(minutes=1))

    monday = paris(2026, 6, 1, 8)
    events = EndpointEvent.objects.filter(kind="schedule", endpoint=same)
    before = events.count()
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules_apply(now=monday) == [flips.pk]
    assert queued_reconciles(broker) == [flips.pk]
    rows = {e.name: e for e in Endpoint.objects.all()}
    assert (rows["flips"].schedule_active, rows["same"].schedule_active, rows["stays"].schedule_active) == (0, 0, None)
    assert rows["plain"].schedule_active is None and rows["same"].schedule_next_change == paris(2026, 6, 1, 18)
    assert events.count() == before + 1  # the window is recorded, though nothing is reconciled
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules_apply(now=monday + timedelta(minutes=1)) == []  # idempotent
    assert queued_reconciles(broker) == [flips.pk]


def test_beat_reads_the_scheduled_endpoints_through_their_partial_index(db):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: make the planner show its index
    assert "endpoint_scheduled" in scheduled_endpoints().explain()


@pytest.mark.django_db(transaction=True)
def test_a_pass_that_read_before_a_concurrent_spec_write_records_nothing(broker):
    """Real connections: the pass has read the row and waits on its lock while a spec write commits; its
    conditional UPDATE then matches nothing, so the spec write's own window stands."""
    user = make_user("racer")
    endpoint = make(user, "web", OFFICE)
    schedules_apply(now=paris(2026, 5, 31, 12))
    broker.clear()  # the create's reconcile, and one if the real clock was inside the window at create
    locked, failures = threading.Event(), []

    def spec_write() -> None:
        try:
            with transaction.atomic():
                Endpoint.objects.select_for_update().get(pk=endpoint.pk)
                locked.set()
                deadline = time.monotonic() + 10
                with connection.cursor() as cursor:
                    while True:  # until the pass waits on this row's lock
                        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND datname = current_database()")
                        if cursor.fetchone()[0]:
                            break
                        assert time.monotonic() < deadline, "the pass never waited on the row"
                        time.sleep(0.05)
                Endpoint.objects.filter(pk=endpoint.pk).update(generation=F("generation") + 1)
        except Exception as exc:  # reported by the main thread
            failures.append(exc)
            locked.set()
        finally:
            connection.close()

    writer = threading.Thread(target=spec_write)
    writer.start()
    locked.wait(10)
    assert schedules_apply(now=paris(2026, 6, 1, 8)) == []
    writer.join(15)
    assert failures == []
    row = Endpoint.objects.get(pk=endpoint.pk)
    assert (row.generation, row.schedule_active) == (2, None) and queued_reconciles(broker) == []
    assert schedules_apply(now=paris(2026, 6, 1, 8)) == [endpoint.pk]  # the next pass records it


def test_a_schedule_that_no_longer_parses_stops_only_its_own_endpoint(alice, broker,
                                                                      django_capture_on_commit_callbacks):
    broken, fine = make(alice, "broken", OFFICE), make(alice, "fine", OFFICE)
    schedules_apply(now=paris(2026, 5, 31, 12))
    Endpoint.objects.filter(pk=broken.pk).update(scaling_schedules=[{**OFFICE, "timezone": "Gone/Away"}])
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules_apply(now=paris(2026, 6, 1, 8)) == [fine.pk]
    assert Endpoint.objects.get(pk=broken.pk).schedule_active is None  # its last recorded bounds stay


def test_a_window_wakes_a_scaled_to_zero_endpoint_and_keeps_the_idle_sweep_off(alice):
    morning = {**OFFICE, "minReplica": 1, "maxReplica": 2}
    endpoint = make(alice, "web", morning, minReplica=0, scaleToZeroTimeout=15)
    schedules_apply(now=paris(2026, 5, 31, 12))
    Endpoint.objects.filter(pk=endpoint.pk).update(state="running")
    assert [e.pk for e in idle_candidates()] == [endpoint.pk]  # base minReplica 0: may go idle
    services.endpoint_scale_to_zero(account=alice.personal_account, name="web", actor=None)
    assert schedules_apply(now=paris(2026, 6, 1, 8)) == [endpoint.pk]
    endpoint.refresh_from_db()
    assert (endpoint.intent, endpoint.state) == ("run", "initializing")
    assert "schedule 0 asks for 1 replicas" in endpoint.message
    Endpoint.objects.filter(pk=endpoint.pk).update(state="running")
    assert idle_candidates() == []  # minReplica 1 in force: never idle-scaled to zero inside the window


# ---------------------------------------------------------------- the HPA on the fake cluster
def hpa_bounds(kube, name="ep-web") -> tuple[int, int]:
    spec = kube.get_object("horizontalpodautoscalers", NS, name)["spec"]
    return spec["minReplicas"], spec["maxReplicas"]


def reconcile_until_hpa(kube, endpoint_id: int, wanted: tuple[int, int], timeout: float = 15.0) -> None:
    """Reconcile as the worker would (a pass may meet a 409 from the fake's controllers and retry) until the
    HPA has ``wanted`` bounds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            endpoint_reconcile(endpoint_id=endpoint_id)
        except Retry:
            pass
        if hpa_bounds(kube) == wanted:
            return
        assert time.monotonic() < deadline, f"HPA {hpa_bounds(kube)} != {wanted}"
        time.sleep(0.1)


def test_the_hpa_follows_the_window_with_beat_driving_the_clock(alice, cluster, fake_kube, fake_hub, broker,
                                                                django_capture_on_commit_callbacks):
    # 30 March 2026 is the Monday after Paris moved to summer time: 08:00 there is 06:00 UTC, not 07:00.
    endpoint = create(alice, compute={"scaling": {**BASE, "schedules": [OFFICE]}})
    schedules_apply(now=utc(2026, 3, 30, 5, 59))
    endpoint = converge(endpoint.pk, "running")
    assert hpa_bounds(fake_kube) == (1, 2)
    seen = EndpointEvent.objects.filter(kind="schedule").count()  # the create ran on the real clock

    broker.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules_apply(now=utc(2026, 3, 30, 6)) == [endpoint.pk]
    assert queued_reconciles(broker) == [endpoint.pk]
    reconcile_until_hpa(fake_kube, endpoint.pk, (2, 6))
    assert deployment(fake_kube)["spec"]["replicas"] == 2  # the raised minimum is applied at once
    status = endpoint_body(Endpoint.objects.get())["status"]["scaling"]
    assert status == {"activeSchedule": 0, "minReplica": 2, "maxReplica": 6, "nextChange": "2026-03-30T16:00:00.000Z"}
    converge(endpoint.pk, "running")
    fake_kube.clear_requests()
    for _ in range(2):
        endpoint_reconcile(endpoint_id=endpoint.pk)
    assert fake_kube.writes() == []  # converged: nothing more to write inside the window

    with django_capture_on_commit_callbacks(execute=True):
        assert schedules_apply(now=utc(2026, 3, 30, 15, 59)) == []
        assert schedules_apply(now=utc(2026, 3, 30, 16)) == [endpoint.pk]
    reconcile_until_hpa(fake_kube, endpoint.pk, (1, 2))
    assert deployment(fake_kube)["spec"]["replicas"] == 2  # the HPA's to lower, at its own pace
    assert endpoint_body(Endpoint.objects.get())["status"]["scaling"] == {
        "activeSchedule": None, "minReplica": 1, "maxReplica": 2, "nextChange": "2026-03-31T06:00:00.000Z"}
    events = list(EndpointEvent.objects.filter(kind="schedule").values_list("message", flat=True))
    assert events[seen:] == ["Replicas 2-6 from schedule 0", "Replicas 1-2 from the base scaling"]
