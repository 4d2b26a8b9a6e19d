"""The one module that imports ``kubernetes``: clients per cluster, generic REST verbs, error classes.

Objects travel as plain dicts (the renderer's output) through the official client's transport, so one
small set of verbs serves every kind in ``deployments.kinds``. Every call has a timeout.
"""

from __future__ import annotations

import json
import logging
import threading

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException

from .kinds import KINDS, Kind

log = logging.getLogger(__name__)

TIMEOUT = (5, 20)  # connect, read seconds
TRANSIENT_STATUS = {409, 429, 500, 502, 503, 504}
BY_KIND = {k.kind: k for k in KINDS}


class KubeError(Exception):
    """A Kubernetes call failed. ``transient`` errors are retried; others are reported on the endpoint."""

    def __init__(self, message: str, *, status: int | None, transient: bool, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.transient, self.retry_after = status, transient, retry_after


def _error(exc: Exception) -> KubeError:
    if isinstance(exc, ApiException):
        message = exc.reason or "error"
        try:
            message = json.loads(exc.body or "{}").get("message") or message
        except (ValueError, AttributeError):
            pass
        retry_after = None
        if exc.headers and exc.headers.get("Retry-After"):
            try:
                retry_after = float(exc.headers["Retry-After"])
            except ValueError:
                retry_after = None
        # A namespace being finalised refuses new objects (403) until it is gone: a create then succeeds.
        terminating = exc.status == 403 and "being terminated" in message
        transient = exc.status in TRANSIENT_STATUS or exc.status == 0 or terminating
        return KubeError(f"Kubernetes API {exc.status}: {message}", status=exc.status, transient=transient,
                         retry_after=retry_after)
    return KubeError(f"Kubernetes API unreachable: {type(exc).__name__}", status=None, transient=True)


def _path(kind: Kind, namespace: str | None, name: str | None = None) -> str:
    base = f"/api/{kind.version}" if not kind.group else f"/apis/{kind.group}/{kind.version}"
    if kind.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{kind.resource}"
    return f"{base}/{name}" if name else base


class Kube:
    """Generic verbs over one cluster's API. Methods raise KubeError; ``get`` returns None on 404."""

    def __init__(self, api_client: kubernetes.client.ApiClient):
        self.api = api_client

    def _call(self, method: str, path: str, *, body=None, query=None, accept="application/json"):
        try:
            method, url, headers, body, post = self.api.param_serialize(
                method, path, query_params=list((query or {}).items()),
                header_params={"Accept": accept, "Content-Type": "application/json"},
                body=body, auth_settings=["BearerToken"])
            response = self.api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                         _request_timeout=TIMEOUT)
            data = response.read()
            if not 200 <= response.status <= 299:
                raise ApiException.from_response(http_resp=response, body=data.decode(errors="replace"), data=None)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from exc
        if accept != "application/json":
            return data.decode(errors="replace")
        return json.loads(data) if data else {}

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        """Every object of ``kind`` (in ``namespace``, or in all namespaces when None) matching the selector."""
        query = {"labelSelector": label_selector} if label_selector else {}
        return self._call("GET", _path(BY_KIND[kind], namespace), query=query).get("items", [])

    def list_versioned(self, kind: str, label_selector: str) -> tuple[list[dict], str]:
        """Every object of ``kind`` in every namespace matching the selector, and the list's
        resourceVersion (where a watch of the same selection starts)."""
        answer = self._call("GET", _path(BY_KIND[kind], None), query={"labelSelector": label_selector})
        return answer.get("items", []), answer["metadata"]["resourceVersion"]

    def watch(self, kind: str, label_selector: str, resource_version: str, *, timeout: int):
        """The changes to the selection after ``resource_version``, as ``(type, object)`` (ADDED, MODIFIED,
        DELETED, BOOKMARK, ERROR), until the server ends the watch after ``timeout`` seconds. An ERROR
        with code 410 means the version is too old: list again. Raises KubeError when the request fails."""
        query = {"watch": "1", "labelSelector": label_selector, "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout)}
        try:
            method, url, headers, body, post = self.api.param_serialize(
                "GET", _path(BY_KIND[kind], None), query_params=list(query.items()),
                header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
            response = self.api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                         _request_timeout=(TIMEOUT[0], timeout + 30))
            if not 200 <= response.status <= 299:
                data = response.read()
                raise ApiException.from_response(http_resp=response, body=data.decode(errors="replace"), data=None)
            raw = response.response
            try:
                pending = b""
                for chunk in raw.stream(64 * 1024, decode_content=True):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            event = json.loads(line)
                            yield event.get("type", ""), event.get("object") or {}
            finally:
                raw.release_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _error(exc) from exc

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return self._call("GET", _path(BY_KIND[kind], namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, obj: dict) -> dict:
        kind = BY_KIND[obj["kind"]]
        return self._call("POST", _path(kind, obj["metadata"].get("namespace")), body=obj)

    def replace(self, obj: dict) -> dict:
        kind = BY_KIND[obj["kind"]]
        return self._call("PUT", _path(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"]), body=obj)

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (foreground-free, children by the garbage collector). False if it was already gone."""
        try:
            self._call("DELETE", _path(BY_KIND[kind], namespace, name),
                       body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    def version(self) -> dict:
        """The API server's ``/version`` (``gitVersion``, ``major``, ``minor``, ...)."""
        return self._call("GET", "/version")

    def logs(self, namespace: str, pod: str, *, tail: int, container: str = "inference") -> str:
        path = _path(BY_KIND["Pod"], namespace, pod) + "/log"
        return self._call("GET", path, query={"tailLines": str(tail), "container": container}, accept="text/plain")


_clients: dict[tuple, Kube] = {}
_clients_lock = threading.Lock()


def kube_for(cluster) -> Kube:
    """A cached client for a registered cluster (rebuilt when the cluster row changes)."""
    key = (cluster.pk, cluster.updated_at)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = Kube(_api_client(cluster))
            for stale in [k for k in _clients if k[0] == cluster.pk]:
                _clients.pop(stale)
            _clients[key] = client
        return client


def _api_client(cluster) -> kubernetes.client.ApiClient:
    from controlplane.encryption import decrypt_json

    configuration = kubernetes.client.Configuration()
    if cluster.in_cluster:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubeconfig = decrypt_json(cluster.kubeconfig_encrypted)
        kubernetes.config.load_kube_config_from_dict(kubeconfig, context=cluster.context or None,
                                                     client_configuration=configuration)
    configuration.retries = False  # the reconciler owns the retry policy
    return kubernetes.client.ApiClient(configuration)

