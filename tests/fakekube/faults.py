"""Fault injection: scripted failures, random failures, hangs and an 'API down' switch.

Contract:
- An injected failure is decided BEFORE the request is handled, so a write that fails
  this way is never applied (what a client sees from a 5xx/429 at the apiserver front
  door). The answer is a proper v1 Status; 429 always carries ``Retry-After`` (1 s unless
  told otherwise) and any failure given ``retry_after`` carries it too, plus
  ``details.retryAfterSeconds`` as the apiserver does.
- A hang delays the request and then handles it normally: a client that timed out may
  still have had its write applied - exactly the ambiguity a real slow apiserver creates.
- ``methods`` filters match either the HTTP method ("POST") or the API verb ("create").
- ``unreachable`` makes the server close every connection without answering.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from .errors import REASONS, ApiError
from .records import RequestRecord

_MESSAGES = {
    429: "Too many requests, please try again later.",
    409: "Operation cannot be fulfilled: the object has been modified; please apply your "
         "changes to the latest version and try again",
    500: "Internal error occurred: fakekube injected failure",
    503: "The server is currently unable to handle the request",
    504: "The server was unable to return a response in the time allotted",
}


@dataclass
class _Rule:
    remaining: int
    status: int = 500
    retry_after: int | None = None
    methods: frozenset[str] | None = None
    seconds: float = 0.0

    def matches(self, record: RequestRecord) -> bool:
        if self.remaining <= 0:
            return False
        return self.methods is None or bool({record.method.upper(), record.verb.upper()}
                                            & self.methods)


def injected_error(status: int, retry_after: int | None = None) -> ApiError:
    if status == 429 and retry_after is None:
        retry_after = 1
    headers, details = {}, None
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
        details = {"retryAfterSeconds": retry_after}
    message = _MESSAGES.get(status, f"fakekube injected failure ({status})")
    return ApiError(status, message, REASONS.get(status, "Unknown"), details, headers)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fail_rules: list[_Rule] = []
        self._hang_rules: list[_Rule] = []
        self._rate = 0.0
        self._rate_statuses: tuple[int, ...] = ()
        self._rng = random.Random(0)
        self.unreachable = False
        # Set on stop so hung requests wake up instead of pinning threads.
        self.stopping = threading.Event()

    def fail_next(self, n: int, status: int = 500, retry_after: int | None = None,
                  methods=None) -> None:
        wanted = frozenset(m.upper() for m in methods) if methods else None
        with self._lock:
            self._fail_rules.append(_Rule(n, status, retry_after, wanted))

    def hang_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._hang_rules.append(_Rule(n, seconds=seconds))

    def set_failure_rate(self, p: float, statuses=(500, 503, 429, 409), seed: int = 0) -> None:
        with self._lock:
            self._rate = p
            self._rate_statuses = tuple(statuses)
            self._rng = random.Random(seed)

    def reset(self) -> None:
        with self._lock:
            self._fail_rules.clear()
            self._hang_rules.clear()
            self._rate = 0.0
        self.unreachable = False

    def take_hang(self, record: RequestRecord) -> float:
        with self._lock:
            for rule in self._hang_rules:
                if rule.matches(record):
                    rule.remaining -= 1
                    return rule.seconds
        return 0.0

    def sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def take_failure(self, record: RequestRecord) -> ApiError | None:
        with self._lock:
            for rule in self._fail_rules:
                if rule.matches(record):
                    rule.remaining -= 1
                    return injected_error(rule.status, rule.retry_after)
            if self._rate > 0 and self._rng.random() < self._rate:
                return injected_error(self._rng.choice(self._rate_statuses))
        return None
