"""HTTP front end: routing, request logging, fault injection, response encoding.

Contract: ``FakeApiServer(context)`` binds 127.0.0.1 on a random port and serves the
Kubernetes REST paths in resources.py (namespaced, cluster-wide and cluster-scoped
collections, items, ``/status``, ``/scale``, ``pods/{name}/log``) plus ``/version``, ``/api``,
``/api/v1``, ``/apis``, ``/apis/{group}`` and ``/apis/{group}/{version}`` discovery and
``/healthz``, ``/livez``, ``/readyz``.
Order of work for each request: log it, apply any hang, drop it if the API is
'unreachable', apply any injected failure, then hand it to ``KubeApi``. An unexpected
exception in the fake itself becomes a 500 Status *and* is appended to
``context.internal_errors`` so tests can tell a fake bug from an injected failure.
"""

from __future__ import annotations

import json
import socket
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import yaml

from . import resources
from .api import KubeApi, Route
from .errors import ApiError
from .faults import FaultInjector
from .records import RequestLog, RequestRecord


@dataclass
class ServerContext:
    api: KubeApi
    faults: FaultInjector
    log: RequestLog
    k8s_version: str
    internal_errors: list[str] = field(default_factory=list)


_COLLECTION_VERBS = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}
_ITEM_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def resolve(method: str, path: str) -> Route:
    """Map a resource path to a Route; raises ApiError(404/405) for anything else."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "the server could not find the requested resource")
    namespace = None
    # namespaces/{ns}/{plural}... is a namespaced path unless {plural} is really a
    # subresource of the Namespace itself (namespaces/{name}/status).
    if len(rest) >= 3 and rest[0] == "namespaces":
        rt = resources.lookup(group, version, rest[2])
        if rt is not None and rt.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, "the server could not find the requested resource")
    rt = resources.lookup(group, version, rest[0])
    if rt is None:
        raise ApiError(404, "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    allowed = ({"status"} if rt.status_subresource else set()) \
        | ({"log"} if rt.plural == "pods" else set()) \
        | ({"scale"} if rt.plural in ("deployments", "replicasets") else set())
    if sub is not None and sub not in allowed:
        raise ApiError(404, "the server could not find the requested resource")
    if name is None:
        verb = _COLLECTION_VERBS.get(method)
        # All-namespaces collections of namespaced kinds can only be listed.
        if rt.namespaced and namespace is None and verb != "list":
            verb = None
    else:
        verb = _ITEM_VERBS.get(method)
        if sub == "log" and verb != "get":
            verb = None
    if verb is None:
        raise ApiError(405, f"{method} is not supported on {path}")
    return Route(verb=verb, rt=rt, namespace=namespace, name=name, subresource=sub)


def discovery(path: str, k8s_version: str, address: str) -> dict | str | None:
    """Discovery documents and health endpoints (None: not a discovery path)."""
    parts = [p for p in path.split("/") if p]
    if parts in (["healthz"], ["livez"], ["readyz"]):
        return "ok"
    if parts == ["version"]:
        return resources.version_info(k8s_version)
    if parts == ["api"]:
        return resources.api_versions(address)
    if parts == ["apis"]:
        return resources.api_group_list()
    if parts == ["api", "v1"]:
        return resources.api_resource_list("", "v1")
    if len(parts) == 2 and parts[0] == "apis":
        for group in resources.api_group_list()["groups"]:
            if group["name"] == parts[1]:
                return {"kind": "APIGroup", "apiVersion": "v1", **group}
    if len(parts) == 3 and parts[0] == "apis":
        return resources.api_resource_list(parts[1], parts[2])
    return None


def _parse_body(body: bytes, content_type: str):
    if not body:
        return None
    text = body.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "yaml" in content_type:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            pass
    return text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the apiserver; needs Content-Length
    timeout = 30  # idle keep-alive connections must not pin handler threads forever
    server: _HTTPServer

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every keep-alive request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - silence per-request stderr noise
        pass

    def handle_one_request(self):
        if self.server.context.faults.unreachable:
            self.close_connection = True
            return
        super().handle_one_request()

    def _serve(self):
        ctx = self.server.context
        if ctx.faults.unreachable:
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        route, route_error, doc = None, None, None
        try:
            route = resolve(self.command, url.path)
        except ApiError as e:
            route_error = e
            if self.command == "GET":
                host, port = self.server.server_address[:2]
                doc = discovery(url.path, ctx.k8s_version, f"{host}:{port}")
        record = RequestRecord(
            method=self.command, path=url.path, query=query,
            kind=route.rt.plural if route else None,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
            verb=route.verb if route else ("get" if self.command == "GET" else
                                           self.command.lower()),
            subresource=route.subresource if route else None,
            content_type=ctype or None, body=_parse_body(body, ctype))
        ctx.log.append(record)
        hang = ctx.faults.take_hang(record)
        if hang:
            ctx.faults.sleep(hang)
        if ctx.faults.unreachable or ctx.faults.stopping.is_set():
            self.close_connection = True
            return
        headers: dict = {}
        try:
            failure = ctx.faults.take_failure(record)
            if failure is not None:
                raise failure
            if doc is not None:
                code, payload, rctype = 200, doc, None
            elif route is None:
                raise route_error
            else:
                code, payload, rctype = ctx.api.handle(route, query, body, ctype)
        except ApiError as e:
            code, payload, rctype, headers = e.code, e.body(), None, e.headers
        except Exception:  # a bug in the fake: answer 500 but make it visible
            ctx.internal_errors.append(f"{self.command} {self.path}\n{traceback.format_exc()}")
            err = ApiError(500, "fakekube internal error (see kube.internal_errors)")
            code, payload, rctype = 500, err.body(), None
        record.status = code
        self._send(code, payload, rctype, headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _send(self, code: int, payload, content_type: str | None, headers: dict) -> None:
        if isinstance(payload, str):
            data = payload.encode()
            content_type = content_type or "text/plain"
        else:
            data = json.dumps(payload).encode()
            content_type = content_type or "application/json"
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 drops SYNs under bench bursts

    def __init__(self, address, context: ServerContext):
        super().__init__(address, _Handler)
        self.context = context
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def verify_request(self, request, client_address) -> bool:
        # Refusing here makes socketserver close the fresh connection without a byte sent.
        return not self.context.faults.unreachable

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakeApiServer:
    """Owns the listening socket and the serving thread."""

    def __init__(self, context: ServerContext, host: str = "127.0.0.1"):
        self._httpd = _HTTPServer((host, 0), context)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fakekube-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)
