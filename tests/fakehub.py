"""A stub Hugging Face Hub that answers ``model_info`` for revision pinning, over real HTTP.

``FakeHub.repos`` maps repo id -> {revision: sha}; ``"main"`` is the default branch. Unknown repos answer
404 with ``X-Error-Code: RepoNotFound`` and unknown revisions ``RevisionNotFound``, as the Hub does.
``fail_next`` makes the next requests answer 503. ``calls`` records each (repo, revision) asked.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

ROUTE = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)(?:/revision/(?P<rev>[^?]+))?(?:\?.*)?$")


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict[str, str]] = {"gpt2": {"main": "1" * 40, "v1": "2" * 40}}
        self.calls: list[tuple[str, str]] = []
        # Private repositories: repo -> the one token that may read it (as the Hub: 401 RepoNotFound else).
        self.private: dict[str, str] = {}
        self.tokens_seen: list[str | None] = []
        self.failures = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                match = ROUTE.match(self.path)
                if not match:
                    return self._send(404, {"error": "Not found"}, "EntryNotFound")
                repo, rev = match["repo"], unquote(match["rev"] or "main")
                hub.calls.append((repo, rev))
                if hub.failures:
                    hub.failures -= 1
                    return self._send(503, {"error": "Hub is overloaded"})
                auth = self.headers.get("Authorization") or ""
                token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
                hub.tokens_seen.append(token)
                if repo not in hub.repos or (repo in hub.private and token != hub.private[repo]):
                    return self._send(401 if repo in hub.private else 404,
                                      {"error": f"Repository {repo} not found"}, "RepoNotFound")
                if rev not in hub.repos[repo]:
                    return self._send(404, {"error": f"Invalid rev id: {rev}"}, "RevisionNotFound")
                self._send(200, {"id": repo, "modelId": repo, "sha": hub.repos[repo][rev], "private": repo in hub.private,
                                 "tags": [], "siblings": []})

            def _send(self, status, body, error_code=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_code:
                    self.send_header("X-Error-Code", error_code)
                    self.send_header("X-Error-Message", body["error"])
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, n: int) -> None:
        self.failures = n
