"""Browser fixtures: a real headless Chromium (Debian's ``chromium``, installed by ``make install``) driven by
Playwright against the web process as production runs it.

Fixtures (loaded for every test module by ``-p tests.browser`` in pyproject.toml):

- ``web_server`` (session): gunicorn running ``controlplane.wsgi`` with DEBUG off on a STATIC_ROOT that
  ``collectstatic`` filled (whitenoise serves the hashed names, as in the image), on the test database.
  It is another process: rows a test writes must be committed to be seen there (the fixtures below ask
  for ``transactional_db``), and in-test ``settings`` changes do not reach it. ``.url``, ``.log()``.
- ``browser`` (session): Chromium, launched once per session. Tests do not call it directly: they use
  ``page`` or ``browser_context``, which switch the thread into Playwright's event loop for the test and
  back out after it (see ``_PlaywrightLoop``).
- ``browser_context`` (test): a fresh context (no cookies) whose relative URLs go to ``web_server``. Every
  request to another origin is aborted and recorded in ``page_log.offsite``. When the test fails, its
  output shows what the web process logged meanwhile.
- ``page`` (test): a page of that context; console errors (a Content-Security-Policy refusal is one) and
  uncaught page errors go to ``page_log.errors``. At teardown a full-page screenshot is saved as
  ``.artifacts/browser/<test>.png`` (listed at the end of the run).
- ``page_log`` (test): that record.
- ``superuser`` (test): a superuser with ``ADMIN_PASSWORD``; ``admin_page`` (test): ``page`` logged in as
  them through the admin's login form, left on /admin/.
- ``screenshot(page, name)``: save an extra screenshot beside the teardown one.

No browser means failure, not a skip: the browser tests are part of ``make test``. ``SKIP_BROWSER_TESTS=1``
skips them explicitly (each one is reported as skipped with that reason). ``CHROMIUM`` names another
Chromium binary; ``BROWSER_ARTIFACTS`` another screenshot directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or REPO / ".artifacts" / "browser")
ADMIN_PASSWORD = "browser-admin-password"
# Debian's package puts the browser itself here; /usr/bin/chromium is a shell launcher that sources
# /etc/chromium.d/ (extension loading, a /dev/shm check that misparses some container mounts), which a
# test has no use for. Other distributions' names are tried after it.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
# As root (CI, containers) Chromium refuses to start with its sandbox; containers often give /dev/shm only
# 64 MB, which Chromium's renderers outgrow (they crash), so they use /tmp instead.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]
SCREENSHOT_MAX_HEIGHT = 10_000
TIMEOUT_MS = 15_000  # per Playwright action; a page of ours that needs longer is a failure

_saved: list[Path] = []  # screenshots of this run, listed in the terminal summary


def browser_tests_skipped() -> bool:
    return os.environ.get("SKIP_BROWSER_TESTS", "").lower() in {"1", "true", "yes"}


def chromium_executable() -> str:
    """The Chromium binary to drive, or a failure saying how to get one."""
    named = os.environ.get("CHROMIUM")
    for candidate in [named] if named else CANDIDATES:
        found = candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else shutil.which(candidate)
        if found:
            return found
    pytest.fail(f"no Chromium found ({named or ', '.join(CANDIDATES)}): `make install` installs Debian's "
                "`chromium` with apt-get; set CHROMIUM to another binary, or SKIP_BROWSER_TESTS=1 to skip the "
                "browser tests", pytrace=False)


# ---------------------------------------------------------------- the web process
@dataclass
class WebServer:
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture(scope="session")
def web_server(django_db_setup, collected_static, tmp_path_factory):
    """gunicorn with DEBUG off, production keys and collected static files, on the test database and Redis."""
    from django.conf import settings

    from tests.gatewayrig import database_url
    from tests.helpers import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GATEWAY_", "SECRETS_", "CONTROLPLANE_"))}
    # The encryption key is the suite's own, so secrets a test stores are readable by the web process.
    env |= {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50,
            "SECRETS_ENCRYPTION_KEY": settings.SECRETS_ENCRYPTION_KEY, "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_STATIC_ROOT": str(collected_static), "DATABASE_URL": database_url(),
            "DATABASE_CONN_MAX_AGE": "0", "PYTHONUNBUFFERED": "1"}
    log = tmp_path_factory.mktemp("browser-web") / "gunicorn.log"
    # Threads, so the browser's parallel requests for a page's assets do not queue behind each other.
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind", f"127.0.0.1:{port}",
                                 "--workers", "1", "--threads", "4", "--access-logfile", "-"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = WebServer(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while _get_status(f"{server.url}/healthz") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, f"the web process did not start:\n{server.log()}"
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the browser
class _PlaywrightLoop:
    """Playwright's sync API keeps its asyncio loop marked as the thread's running loop between calls (the loop
    itself is suspended then: its dispatcher is a greenlet that only runs inside a Playwright call). Left
    marked, the rest of the suite would run "inside an event loop": Django refuses database calls
    (SynchronousOnlyOperation) and ``asyncio.run`` refuses to start. The mark is lifted outside browser tests
    and put back for them (``page``)."""

    loop = None

    @classmethod
    def capture(cls) -> None:
        cls.loop = asyncio.get_running_loop()
        cls.suspend()

    @classmethod
    def resume(cls) -> None:
        asyncio._set_running_loop(cls.loop)

    @staticmethod
    def suspend() -> None:
        asyncio._set_running_loop(None)


@pytest.fixture(scope="session")
def browser():
    if browser_tests_skipped():
        pytest.skip("SKIP_BROWSER_TESTS is set")
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed ({exc}): run `make install`", pytrace=False)
    playwright = sync_playwright().start()
    try:
        # headless=True is Chromium's own headless mode (the same browser, no window); Playwright's bundled
        # browsers are never downloaded, the system's is driven.
        browser = playwright.chromium.launch(executable_path=executable, headless=True, chromium_sandbox=False,
                                             args=CHROMIUM_ARGS)
    except Exception as exc:
        playwright.stop()
        pytest.fail(f"{executable} did not start under Playwright: {exc}", pytrace=False)
    _PlaywrightLoop.capture()
    yield browser
    _PlaywrightLoop.resume()
    browser.close()
    playwright.stop()


@dataclass
class PageLog:
    """What a page did that a test of ours forbids: requests to other origins, console and page errors."""

    origin: str
    offsite: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def artifact_name(nodeid: str) -> str:
    """``tests/test_browser.py::test_x[a/b]`` -> ``test_browser.test_x-a-b``: one file name per test."""
    name = nodeid.split("/")[-1].replace(".py::", ".").replace("::", ".")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``<artifacts>/<name>.png`` and return its path. The page is cut
    at ``SCREENSHOT_MAX_HEIGHT`` pixels: Redoc's is 24,000 tall (2 MB) and its top is what tells."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    width, height = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    page.screenshot(path=str(path), full_page=True,
                    clip={"x": 0, "y": 0, "width": width, "height": min(height, SCREENSHOT_MAX_HEIGHT)})
    _saved.append(path)
    print(f"screenshot: {path}")
    return path


@pytest.fixture
def page_log(web_server):
    return PageLog(origin=_origin(web_server.url))


@pytest.fixture
def browser_context(browser, web_server, page_log, monkeypatch):
    from django.db import connections

    _PlaywrightLoop.resume()
    # In a browser test, database calls (fixtures, the test body, the flush after it) run between Playwright
    # calls, with Playwright's loop marked running but suspended, so nothing is blocked: Django's guard against
    # blocking a running loop is turned off for the test. Django also keeps a second set of connections for
    # "async" code (looked up by whether a loop is running): pin the thread's own set, so that the test, its
    # fixtures and the flush after it share one connection (with two, the second would miss the first's
    # transaction and be left open when the test database is dropped).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    monkeypatch.setattr(connections, "_connections", connections._connections._storage)
    # A light colour scheme and a fixed viewport: computed colours and screenshots do not depend on the host.
    context = browser.new_context(base_url=web_server.url, color_scheme="light", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)

    def offsite(url: str) -> bool:
        return _origin(url) != page_log.origin

    def refuse(route):
        page_log.offsite.append(route.request.url)
        route.abort("blockedbyclient")

    # The context's routes cover every page, frame and worker it opens. Only other origins are routed,
    # so our own requests are not slowed by a round trip through the test process.
    context.route(offsite, refuse)
    log_start = web_server.log_path.stat().st_size
    try:
        yield context
    finally:
        try:
            context.close()
        finally:
            _PlaywrightLoop.suspend()
            # Shown when the test fails: what the web process logged meanwhile (requests, tracebacks).
            with open(web_server.log_path, errors="replace") as log:
                log.seek(log_start)
                print(f"----- web process log\n{log.read()[-8000:]}")


@pytest.fixture
def page(browser_context, page_log, request):
    page = browser_context.new_page()
    page.on("console", lambda message: message.type == "error" and page_log.errors.append(
        f"console: {message.text} ({message.location.get('url', '')})"))
    page.on("pageerror", lambda error: page_log.errors.append(f"page error: {error}"))
    yield page
    from playwright.sync_api import Error

    try:
        screenshot(page, artifact_name(request.node.nodeid))
    except Error as exc:  # a crashed page: the test's own failure says more than a teardown error would
        print(f"no screenshot of {request.node.nodeid}: {exc}")


@pytest.fixture
def superuser(transactional_db):
    from tests.factories import make_user

    return make_user("browser-admin", email="browser-admin@example.com", is_staff=True, password=ADMIN_PASSWORD)


def admin_login(page, username: str, password: str) -> None:
    """Log in through /admin/login/ as a person would, and wait for the admin index."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("input[type=submit]")
    if urlsplit(page.url).path != "/admin/":
        raise AssertionError(f"login as {username} did not reach /admin/ (at {page.url}): {page.inner_text('body')[:500]}")


@pytest.fixture
def admin_page(page, superuser):
    admin_login(page, superuser.username, ADMIN_PASSWORD)
    return page


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    """A test that drove ``browser`` without ``browser_context`` leaves Playwright's loop marked running:
    lift the mark, so that the tests after it are not taken to run inside an event loop."""
    if _PlaywrightLoop.loop is not None:
        _PlaywrightLoop.suspend()


def pytest_terminal_summary(terminalreporter):
    if _saved:
        terminalreporter.write_sep("-", "browser screenshots")
        for path in dict.fromkeys(_saved):
            terminalreporter.write_line(str(path))
