"""``GET /v2/endpoint/{ns}/{name}/events?follow=true``: Server-Sent Events over real HTTP (a live server).

The stream starts with the events already recorded, then carries each new one as it is committed, each
with ``id:``; ``Last-Event-ID`` resumes after an id; it ends with ``event: end`` when the endpoint is
deleted or its time is up; streams per token are capped. Without ``follow`` the JSON answer is unchanged.
"""

import json
import threading
import time

import pytest
import requests

from endpoints import services as endpoint_services
from tests.factories import endpoint_spec, make_token, make_user
from tests.helpers import expect, user_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def world(live_server, settings):
    settings.EVENT_STREAM_POLL_SECONDS = 0.2
    settings.EVENT_STREAM_HEARTBEAT_SECONDS = 1
    settings.EVENT_STREAM_MAX_SECONDS = 20
    alice = make_user("alice")
    endpoint_services.endpoint_create(account=alice.personal_account, actor=alice, spec=endpoint_spec("ep"))
    return {"alice": alice, "secret": make_token(alice), "url": f"{live_server.url}/v2/endpoint/alice/ep/events"}


class Stream:
    """One SSE connection, parsed into events ({"id", "event", "data"}) and comments, on a thread."""

    def __init__(self, url: str, secret: str, **headers):
        self.response = requests.get(url, params={"follow": "true"}, stream=True, timeout=30,
                                     headers={"Authorization": f"Bearer {secret}", **headers})
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.retry = None
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        current: dict = {}
        try:
            for line in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if line == "":
                    if "data" in current:
                        self.events.append({"event": "message", **current})
                    current = {}
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    field, _, value = line.partition(": ")
                    if field == "retry":
                        self.retry = int(value)
                    else:
                        current[field] = value
        except (requests.RequestException, AttributeError):  # closed by the test
            pass

    def wait(self, predicate, timeout: float = 15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.events):
                return self.events
            time.sleep(0.05)
        raise AssertionError(f"stream: {self.events}")

    def close(self):
        self.response.close()


def kinds(events):
    return [json.loads(e["data"]).get("kind") for e in events if e["event"] == "message"]


def test_follow_streams_the_existing_events_then_new_ones_as_they_happen(world):
    stream = Stream(world["url"], world["secret"])
    try:
        assert stream.response.headers["Content-Type"].startswith("text/event-stream"), stream.response.headers
        assert stream.response.headers["Cache-Control"] == "no-cache"
        stream.wait(lambda events: kinds(events) == ["create"])
        endpoint_services.endpoint_pause(account=world["alice"].personal_account, name="ep", actor=world["alice"])
        events = stream.wait(lambda events: kinds(events) == ["create", "pause"])
        pause = json.loads(events[1]["data"])
        assert (pause["fromState"], pause["toState"]) == ("pending", "paused")
        assert int(events[1]["id"]) == pause["id"] > int(events[0]["id"]), events
        assert stream.retry == 1000
        stream.wait(lambda _: stream.comments, timeout=5)  # heartbeats while idle
        assert stream.comments[0] == ": keepalive"
    finally:
        stream.close()


def test_last_event_id_resumes_after_that_event(world):
    account, alice = world["alice"].personal_account, world["alice"]
    endpoint_services.endpoint_pause(account=account, name="ep", actor=alice)
    endpoint_services.endpoint_resume(account=account, name="ep", actor=alice)
    first = Stream(world["url"], world["secret"])
    try:
        events = first.wait(lambda events: len(events) == 3)
    finally:
        first.close()
    assert kinds(events) == ["create", "pause", "resume"]
    resumed = Stream(world["url"], world["secret"], **{"Last-Event-ID": events[0]["id"]})
    try:
        again = resumed.wait(lambda events: len(events) == 2)
        assert kinds(again) == ["pause", "resume"] and [e["id"] for e in again] == [e["id"] for e in events[1:]]
        endpoint_services.endpoint_pause(account=account, name="ep", actor=alice)
        assert kinds(resumed.wait(lambda events: len(events) == 3)) == ["pause", "resume", "pause"]
    finally:
        resumed.close()
    r = requests.get(world["url"], params={"follow": "true"}, headers={"Authorization": f"Bearer {world['secret']}",
                                                                       "Last-Event-ID": "not-an-id"}, timeout=10)
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["fields"], r.text


def test_the_stream_ends_when_the_endpoint_is_deleted(world):
    stream = Stream(world["url"], world["secret"])
    try:
        stream.wait(lambda events: len(events) == 1)
        endpoint_services.endpoint_delete(account=world["alice"].personal_account, name="ep", actor=world["alice"])
        events = stream.wait(lambda events: events[-1]["event"] == "end")
        assert json.loads(events[-1]["data"]) == {"reason": "deleted"}
    finally:
        stream.close()


def test_the_stream_ends_after_its_maximum_duration(world, settings):
    settings.EVENT_STREAM_MAX_SECONDS = 1
    started = time.monotonic()
    stream = Stream(world["url"], world["secret"])
    try:
        events = stream.wait(lambda events: events and events[-1]["event"] == "end")
        assert json.loads(events[-1]["data"]) == {"reason": "timeout"} and time.monotonic() - started < 10
    finally:
        stream.close()


def test_streams_are_capped_per_token_and_a_closed_stream_frees_its_slot(world, settings):
    settings.EVENT_STREAM_MAX_PER_TOKEN = 1
    first = Stream(world["url"], world["secret"])
    try:
        first.wait(lambda events: len(events) == 1)
        second = requests.get(world["url"], params={"follow": "true"}, timeout=10,
                              headers={"Authorization": f"Bearer {world['secret']}"})
        assert second.status_code == 429 and second.json()["code"] == "too_many_streams", second.text
        other = Stream(world["url"], make_token(world["alice"]))  # another token has its own slots
        other.wait(lambda events: len(events) == 1)
        other.close()
    finally:
        first.close()
    deadline = time.monotonic() + 10  # the server notices the closed connection at its next write
    while time.monotonic() < deadline:
        again = Stream(world["url"], world["secret"])
        if again.response.status_code == 200:
            again.close()
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the closed stream's slot was never freed")


def test_without_follow_the_json_answer_is_unchanged_and_access_is_checked(world):
    api = user_api(world["alice"])
    body = expect(api.get("/v2/endpoint/alice/ep/events"), 200).json()
    assert [e["kind"] for e in body["items"]] == ["create"]
    base = world["url"]
    assert requests.get(base, params={"follow": "true"}, timeout=10).status_code == 401
    bob = make_token(make_user("bob"))
    r = requests.get(base, params={"follow": "true"}, headers={"Authorization": f"Bearer {bob}"}, timeout=10)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json"), r.text
    r = requests.get(base, params={"follow": "maybe"}, headers={"Authorization": f"Bearer {world['secret']}"},
                     timeout=10)
    assert r.status_code == 400 and "follow" in r.json()["fields"], r.text
