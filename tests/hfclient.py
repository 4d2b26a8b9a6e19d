"""The real, unmodified ``huggingface_hub`` client pointed at a live server of ours, in-process.

``redirected(monkeypatch, tmp_path, base, implicit_token, also=())`` redirects the library to ``base`` (the
live server's URL) for the duration of a ``with`` and guards its shared HTTP session: a request to any
origin other than ``base`` and the ``also`` ones (``host:port``, e.g. the gateway an endpoint's URL names)
raises before a connection is made. It yields ``{"seen": [...], "refused": [...]}`` (``"METHOD url"``
strings) and fails on exit if anything was refused.

What the redirect takes with 2.4.0:

- ``constants.INFERENCE_ENDPOINTS_ENDPOINT`` (read at call time by every endpoint method);
- ``constants.ENDPOINT`` (read by ``HfApi.__init__``, i.e. by every ``HfApi()`` built later, including the
  fresh one ``InferenceEndpoint.from_raw`` creates for ``fetch()``/``pause()``/...);
- ``hf_api.api.endpoint``: the module-level ``api`` was built at import with the real Hub URL. Module-level
  helpers such as ``huggingface_hub.whoami()`` need it. (``list_inference_endpoints(namespace="*")`` calls the
  module-level ``list_inference_endpoints`` with an explicit namespace, so it sends no whoami through ``api``;
  it only takes the implicit token from it.)
- the implicit token through ``HF_TOKEN`` (read at call time), with the token file moved out of the way.
"""

import contextlib
import os

import httpx2
import huggingface_hub
from huggingface_hub import constants, hf_api
from huggingface_hub.utils import _http as hf_http


def origin(url) -> str:
    """``host:port`` of an httpx2.URL or a string URL."""
    if isinstance(url, str):
        url = httpx2.URL(url)
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}".lower()


@contextlib.contextmanager
def redirected(monkeypatch, tmp_path, base: str, implicit_token: str, also: tuple[str, ...] = ()):
    base = base.rstrip("/")
    monkeypatch.setattr(constants, "INFERENCE_ENDPOINTS_ENDPOINT", f"{base}/v2")
    monkeypatch.setattr(constants, "INFERENCE_CATALOG_ENDPOINT", f"{base}/api/v1/catalog")
    monkeypatch.setattr(constants, "ENDPOINT", base)
    monkeypatch.setattr(hf_api.api, "endpoint", base)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent-harnesses.json"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    for name in ("HF_OIDC_RESOURCE", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_TOKEN", implicit_token)
    monkeypatch.setenv("HF_HUB_DISABLE_UPDATE_CHECK", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")

    allowed = {origin(base), *(a.lower() for a in also)}
    seen: list[str] = []
    refused: list[str] = []

    def guard(request: httpx2.Request) -> None:
        seen.append(f"{request.method} {request.url}")
        if os.environ.get("HFCLIENT_DEBUG"):
            print(f"[hfclient] {request.method} {request.url}")
        if origin(request.url) not in allowed:
            refused.append(f"{request.method} {request.url}")
            raise RuntimeError(f"request left the test server: {request.method} {request.url}")

    def guarded_client() -> httpx2.Client:
        client = hf_http.default_client_factory()
        client.event_hooks = {**client.event_hooks, "request": [guard, *client.event_hooks["request"]]}
        client.timeout = 30.0
        return client

    huggingface_hub.set_client_factory(guarded_client)
    try:
        yield {"seen": seen, "refused": refused}
    finally:
        huggingface_hub.set_client_factory(hf_http.default_client_factory)
    assert not refused, f"requests to other hosts: {refused}"
