"""Static files and the API docs as production serves them: gunicorn running ``controlplane.wsgi`` with
DEBUG off, on a STATIC_ROOT that ``collectstatic`` filled (as the image does at build time).

The admin's stylesheet is served by the web process itself under the hashed name its pages reference;
Swagger UI (/api/docs/) and Redoc (/api/redoc/) reference nothing on another origin, every file they
reference loads from ours, and they run under the site-wide policy with ``script-src 'self'``.
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from controlplane.middleware import CONTENT_SECURITY_POLICY

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, **headers: str) -> tuple[int, dict, bytes]:
    """GET ``url`` without following redirects: (status, lower-cased headers, body)."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@pytest.fixture(scope="module")
def web(collected_static, tmp_path_factory):
    """The base URL of a gunicorn web process in production mode (DEBUG off, production keys)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GATEWAY_", "SECRETS_", "CONTROLPLANE_"))}
    env |= {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50, "SECRETS_ENCRYPTION_KEY": "e" * 50,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DJANGO_STATIC_ROOT": str(collected_static), "PYTHONUNBUFFERED": "1"}
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind", f"127.0.0.1:{port}",
                                 "--workers", "1"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if fetch(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


class References(HTMLParser):
    """Every URL an HTML page references (src, href, Redoc's spec-url), and its inline scripts."""

    URL_ATTRIBUTES = {"src", "href", "spec-url", "action", "poster", "data"}

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.inline_scripts = 0

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in self.URL_ATTRIBUTES and value is not None:
                self.urls.append((tag, name, value))
            elif name == "srcset" and value:
                self.urls.extend((tag, name, part.split()[0]) for part in value.split(",") if part.strip())
        if tag == "script" and not dict(attrs).get("src"):
            self.inline_scripts += 1


def references(page: bytes) -> References:
    parser = References()
    parser.feed(page.decode())
    return parser


def same_origin(url: str) -> bool:
    """A reference resolved against the page stays on its origin: no scheme, no host, not protocol-relative."""
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith("//")


def test_the_admin_stylesheet_is_served_under_its_hashed_name_with_debug_off(web):
    status, headers, page = fetch(f"{web}/admin/login/")
    assert status == 200, page[:500]
    stylesheets = [value for tag, name, value in references(page).urls if tag == "link" and name == "href"]
    (base_css,) = [url for url in stylesheets if "/admin/css/base" in url]
    assert re.fullmatch(r"/static/admin/css/base\.[0-9a-f]{12}\.css", base_css), base_css
    status, headers, body = fetch(web + base_css)
    assert status == 200 and headers["content-type"].startswith("text/css"), (status, headers)
    assert b"DJANGO Admin styles" in body[:200]  # the admin's stylesheet, not an error page
    # Content-hashed, so cached for good; compressed for clients that take gzip.
    assert "immutable" in headers["cache-control"], headers
    status, headers, _ = fetch(web + base_css, **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip", headers
    # Every other stylesheet and script of the login page is served too.
    for url in stylesheets + [v for tag, name, v in references(page).urls if tag == "script"]:
        assert same_origin(url) and fetch(web + url)[0] == 200, url


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_reference_only_our_origin_and_run_under_script_src_self(web, page):
    status, headers, body = fetch(web + page)
    assert status == 200, body[:500]
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "sandbox" not in CONTENT_SECURITY_POLICY
    found = references(body)
    assert found.inline_scripts == 0  # the policy would refuse them
    assert found.urls, body[:500]
    for tag, name, url in found.urls:
        assert same_origin(url), (tag, name, url)
    assert not re.search(rb"https?://", body), re.findall(rb".{40}https?://.{40}", body)
    scripts = [url for tag, name, url in found.urls if tag == "script"]
    assert scripts and all(url.startswith("/static/") or url.startswith(page) for url in scripts), scripts
    for tag, _name, url in found.urls:
        status, asset_headers, asset = fetch(urljoin(web + page, url))
        assert status == 200, (url, status)
        if url.startswith("/static/"):
            assert re.search(r"\.[0-9a-f]{12}\.\w+$", urlsplit(url).path), url  # the hashed name
            assert "immutable" in asset_headers["cache-control"], url
        if url.endswith(".css"):  # what a stylesheet pulls in stays here too
            for ref in re.findall(rb"url\(\s*['\"]?([^'\")]+)", asset):
                assert ref.startswith(b"data:") or same_origin(ref.decode()), (url, ref)
        if tag == "script" and not url.startswith("/static/"):  # Swagger UI's start-up script
            assert asset_headers["content-type"].startswith("application/javascript"), asset_headers
            assert b'url: "/api/schema/"' in asset and not re.search(rb"https?://", asset), asset[:500]
