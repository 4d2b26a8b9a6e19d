"""Point the unmodified ``hf`` CLI (huggingface_hub 2.4.0) at this control plane.

Put this directory on ``PYTHONPATH``; Python imports ``sitecustomize`` at start-up. It does nothing unless
``HF_INFERENCE_ENDPOINTS_ENDPOINT`` is set. Environment:

- ``HF_INFERENCE_ENDPOINTS_ENDPOINT``: replaces ``constants.INFERENCE_ENDPOINTS_ENDPOINT`` (no env override exists
  in the client), e.g. ``http://localhost:8089/v2``.
- ``HF_INFERENCE_CATALOG_ENDPOINT``: replaces ``constants.INFERENCE_CATALOG_ENDPOINT``, which ``hf endpoints
  catalog ls | deploy`` call; this control plane serves it at ``<base>/api/v1/catalog``. Optional, but without it
  the catalog commands still go to the Hub's own catalog.
- ``HF_ENDPOINT``: read by the client itself at import (whoami); nothing to do here.
- ``HFCLIENT_ALLOWED_HOSTS``: comma-separated ``host:port`` list. When set, every request the client's shared
  HTTP session sends elsewhere is refused (the request raises) and written to ``HFCLIENT_GUARD_LOG``, so a test
  can prove nothing left the machine.
"""

import os

_BASE = os.environ.get("HF_INFERENCE_ENDPOINTS_ENDPOINT")

if _BASE:
    import huggingface_hub.constants as _constants

    _constants.INFERENCE_ENDPOINTS_ENDPOINT = _BASE.rstrip("/")
    if os.environ.get("HF_INFERENCE_CATALOG_ENDPOINT"):
        _constants.INFERENCE_CATALOG_ENDPOINT = os.environ["HF_INFERENCE_CATALOG_ENDPOINT"].rstrip("/")

    _ALLOWED = {h.strip().lower() for h in os.environ.get("HFCLIENT_ALLOWED_HOSTS", "").split(",") if h.strip()}
    if _ALLOWED:
        from huggingface_hub import set_client_factory as _set_client_factory
        from huggingface_hub.utils._http import default_client_factory as _default_client_factory

        def _guard(request):
            url = request.url
            origin = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}".lower()
            if origin not in _ALLOWED:
                log = os.environ.get("HFCLIENT_GUARD_LOG")
                if log:
                    with open(log, "a", encoding="utf-8") as fh:
                        fh.write(f"{request.method} {url}\n")
                raise RuntimeError(f"hfclient guard: refused a request to {url} (allowed: {sorted(_ALLOWED)})")

        def _guarded_client():
            client = _default_client_factory()
            client.event_hooks = {**client.event_hooks, "request": [_guard, *client.event_hooks["request"]]}
            client.timeout = 30.0
            return client

        _set_client_factory(_guarded_client)
