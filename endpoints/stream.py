"""An endpoint's events as Server-Sent Events (``GET .../events?follow=true``).

First the events already recorded (the latest 200, as the JSON answer lists them, or every one after
``Last-Event-ID`` when resuming), then each new one as it is committed, until the endpoint is deleted
(``event: end``, data ``{"reason": "deleted"}``) or ``EVENT_STREAM_MAX_SECONDS`` pass (``reason:
"timeout"``; the client reconnects with ``Last-Event-ID`` and loses nothing). Every event carries ``id:``
(the event's id); comment lines (``: keepalive``) keep idle connections open.

New events are found by polling Postgres every ``EVENT_STREAM_POLL_SECONDS`` for ``id > last`` rather than
by Redis pub/sub: the events table is the truth, so a stream can never miss an event between reading the
backlog and subscribing, nor lose one to a Redis outage, and resuming is the same query. Ids of one
endpoint's events are assigned in commit order (every writer holds the endpoint's row lock while it
appends), so ``id > last`` skips nothing. The cost is one indexed query per open stream per second.

Each open stream holds a web worker (a sync gunicorn worker serves nothing else meanwhile), so streams are
capped per token (``EVENT_STREAM_MAX_PER_TOKEN``, counted in Redis across processes) and last at most
``EVENT_STREAM_MAX_SECONDS``.
"""

import json
import logging
import time
import uuid
from collections.abc import Iterator

import redis
from django.conf import settings

from controlplane.feed import redis_client

from .errors import TooManyStreams
from .models import Endpoint, EndpointEvent
from .serializers import EndpointEventSerializer

log = logging.getLogger(__name__)
BATCH = 500
RECONNECT_MS = 1000


def frame(event: EndpointEvent) -> bytes:
    data = json.dumps(EndpointEventSerializer(event).data, separators=(",", ":"))
    return f"id: {event.pk}\ndata: {data}\n\n".encode()


def _end(reason: str) -> bytes:
    return f"event: end\ndata: {json.dumps({'reason': reason})}\n\n".encode()


def _slots_key(caller: str) -> str:
    # The queue name sets one installation (and one test run) apart from another sharing the Redis database.
    return f"event-streams:{settings.CELERY_TASK_DEFAULT_QUEUE}:{caller}"


def slot_acquire(caller: str):
    """Take one of ``caller``'s ``EVENT_STREAM_MAX_PER_TOKEN`` stream slots, or raise TooManyStreams; returns
    the function that frees it.

    A sorted set per caller, one member per open stream scored with when it must have ended: a process that
    died holding a slot frees it when that time passes. Redis unreachable: the stream is allowed (as the
    rate limits are), and logged."""
    key, member = _slots_key(caller), uuid.uuid4().hex
    client = redis_client()
    try:
        now = time.time()
        pipe = client.pipeline()
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zadd(key, {member: now + settings.EVENT_STREAM_MAX_SECONDS + 60})
        pipe.zcard(key)
        pipe.expire(key, settings.EVENT_STREAM_MAX_SECONDS + 120)
        count = pipe.execute()[2]
    except redis.RedisError as exc:
        log.warning("event_stream.slots_unavailable error=%s", type(exc).__name__)
        return lambda: None

    def release() -> None:
        try:
            client.zrem(key, member)
        except redis.RedisError:  # it expires with its score
            pass

    if count > settings.EVENT_STREAM_MAX_PER_TOKEN:
        release()
        raise TooManyStreams(f"At most {settings.EVENT_STREAM_MAX_PER_TOKEN} event streams may be open per token")
    return release


class EventStream:
    """The body of a streaming response: iterating yields the frames; ``close`` (called by the server when
    the response ends or the client goes, started or not) frees the caller's slot."""

    def __init__(self, endpoint_id: int, first: list[EndpointEvent], after: int | None, release):
        self._frames = event_frames(endpoint_id, first, after)
        self._release = release

    def __iter__(self):
        return self._frames

    def close(self) -> None:
        self._frames.close()
        self._release()


def backlog(endpoint: Endpoint, after: int | None) -> list[EndpointEvent]:
    """What a stream starts with: the events after ``after``, or the latest 200 when not resuming."""
    if after is not None:
        return list(EndpointEvent.objects.filter(endpoint=endpoint, pk__gt=after).order_by("pk")[:BATCH])
    return list(endpoint.events.order_by("-created_at", "-id")[:200])[::-1]


def event_frames(endpoint_id: int, first: list[EndpointEvent], after: int | None) -> Iterator[bytes]:
    """The stream's bytes: ``first``, then the events after them as they are committed, then an end."""
    last = max([after or 0, *(event.pk for event in first)])
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    for event in first:
        yield frame(event)
    deadline = time.monotonic() + settings.EVENT_STREAM_MAX_SECONDS
    beat = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(min(settings.EVENT_STREAM_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        events = list(EndpointEvent.objects.filter(endpoint_id=endpoint_id, pk__gt=last).order_by("pk")[:BATCH])
        for event in events:
            last = event.pk
            yield frame(event)
        if not events and not Endpoint.objects.filter(pk=endpoint_id).exists():
            yield _end("deleted")
            return
        if time.monotonic() - beat >= settings.EVENT_STREAM_HEARTBEAT_SECONDS:
            beat = time.monotonic()
            yield b": keepalive\n\n"
    yield _end("timeout")
