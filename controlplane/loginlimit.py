"""Rate limits on the admin login: failed attempts are counted per client address and per username in the
shared cache (Redis), so the limits hold across every web process.

Once ``ADMIN_LOGIN_MAX_FAILURES_PER_USER`` attempts for one username, or
``ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS`` from one address, have failed within
``ADMIN_LOGIN_WINDOW_SECONDS``, every login for it is refused, the right password too, until the window
ends: the login page shows the form again with an error (never a 500). A successful login clears the
username's count. The address is the peer's, or the one ``API_NUM_PROXIES`` trusted proxies report.
Keys hold digests, never a username as typed.

As with the API limit, a cache that cannot be reached lets logins through (the password is still checked)
and logs ``admin.login_limit_unavailable``: an outage must not lock every operator out.
"""

import hashlib
import logging

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import connection
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)


def _keys(request, username: str) -> list[tuple[str, int]]:
    """(cache key, limit) of each counter a login attempt is charged to."""
    address = BaseThrottle().get_ident(request) or "unknown"
    prefix = f"adminlogin:{connection.settings_dict['NAME']}"
    user = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    addr = hashlib.sha256(address.encode()).hexdigest()
    return [(f"{prefix}:user:{user}", settings.ADMIN_LOGIN_MAX_FAILURES_PER_USER),
            (f"{prefix}:addr:{addr}", settings.ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS)]


def _unavailable(exc: Exception) -> None:
    log.warning("admin.login_limit_unavailable error=%s; admin logins are not rate-limited", type(exc).__name__)


class RateLimitedAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, refusing a locked-out username or address before checking the password."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": "Too many failed login attempts. Try again later.",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        keys = _keys(self.request, username)
        cache = caches["default"]
        try:
            counts = cache.get_many([key for key, _ in keys])
        except Exception as exc:
            _unavailable(exc)
            return super().clean()
        if any(counts.get(key, 0) >= limit for key, limit in keys):
            raise ValidationError(self.error_messages["locked_out"], code="locked_out")
        try:
            cleaned = super().clean()
        except ValidationError:
            self._count_failure(keys)
            raise
        try:
            cache.delete(keys[0][0])
        except Exception as exc:
            _unavailable(exc)
        return cleaned

    @staticmethod
    def _count_failure(keys) -> None:
        cache = caches["default"]
        try:
            for key, _ in keys:
                # add() starts the window; incr() counts within it (the window is fixed from the first failure).
                if not cache.add(key, 1, timeout=settings.ADMIN_LOGIN_WINDOW_SECONDS):
                    try:
                        cache.incr(key)
                    except ValueError:  # expired between add() and incr()
                        cache.add(key, 1, timeout=settings.ADMIN_LOGIN_WINDOW_SECONDS)
        except Exception as exc:
            _unavailable(exc)
