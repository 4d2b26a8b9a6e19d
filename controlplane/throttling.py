"""The API rate limit: ``API_RATE_LIMIT`` requests per caller per window, counted in the shared cache.

The caller is the API token for bearer requests, the user for a session, the client address otherwise.
Each caller has one counter per fixed window (``600/min``: the minute it is in), incremented atomically in
Redis, so the limit holds across every web process. Keys carry the database name: token and user ids are
only unique within one database, and one Redis may serve several.

The limit protects the service; it must not become a way to take it down. If the cache cannot be
reached the request is allowed (logged as ``api.throttle_unavailable``, at most once per
``OUTAGE_SECONDS``), and for ``OUTAGE_SECONDS`` the cache is not tried again, so an outage does not add
its timeout to every request.
"""

import functools
import logging
import time

from django.conf import settings
from django.core.cache import caches
from django.db import connection
from rest_framework.throttling import BaseThrottle

from .models import ApiToken

log = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400,
           "day": 86400}
OUTAGE_SECONDS = 10.0
_cache_down_until = 0.0


@functools.lru_cache(maxsize=8)  # parsed once per value, not per request (tests may override the setting)
def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/min"`` -> ``(600, 60)``; ``None``, ``""`` or ``"off"`` -> None (no limit)."""
    if rate is None or rate.strip().lower() in {"", "off", "none"}:
        return None
    count, _, period = rate.partition("/")
    try:
        return int(count), PERIODS[period.strip().lower()]
    except (KeyError, ValueError):
        raise ValueError(f"API_RATE_LIMIT must look like '600/min' (per s, min, hour or day), got {rate!r}") from None


class ApiRateThrottle(BaseThrottle):
    """DRF throttle for every API view; 429 with Retry-After (the window's remaining seconds) when over."""

    def __init__(self):
        self.retry_after: float | None = None

    def caller(self, request) -> str:
        if isinstance(request.auth, ApiToken):
            return f"token:{request.auth.pk}"
        if request.user is not None and request.user.is_authenticated:
            return f"user:{request.user.pk}"
        return f"addr:{self.get_ident(request)}"

    def allow_request(self, request, view) -> bool:
        global _cache_down_until
        rate = parse_rate(settings.API_RATE_LIMIT)
        if rate is None or time.monotonic() < _cache_down_until:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        key = f"throttle:{connection.settings_dict['NAME']}:{self.caller(request)}:{period}:{window}"
        cache = caches["default"]
        try:
            try:
                count = cache.incr(key)
            except ValueError:  # the first request of this window (or the key just expired)
                count = 1 if cache.add(key, 1, timeout=period + 1) else cache.incr(key)
        except Exception as exc:  # the cache is down: allow, say so, and stop trying for a while
            log.warning("api.throttle_unavailable error=%s; requests are not rate-limited for %.0f s",
                        type(exc).__name__, OUTAGE_SECONDS)
            _cache_down_until = time.monotonic() + OUTAGE_SECONDS
            return True
        if count <= limit:
            return True
        self.retry_after = (window + 1) * period - now
        return False

    def wait(self) -> float | None:
        return self.retry_after
