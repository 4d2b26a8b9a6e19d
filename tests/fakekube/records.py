"""The request log: one ``RequestRecord`` per HTTP request the server received.

Contract: records are appended in arrival order, before fault injection and before the
request is handled, so failed, hung and injected-error requests are all visible;
``status`` is filled in once the answer is known (None if the connection was dropped).
Only requests that came over HTTP are recorded - the simulated controllers write to the
store directly, so their writes never appear here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass
class RequestRecord:
    method: str                 # HTTP method, upper case
    path: str                   # URL path without the query string
    query: dict[str, str]       # query parameters (last value wins)
    kind: str | None            # resource plural ("deployments"); None for discovery
    namespace: str | None
    name: str | None
    verb: str                   # get, list, create, update, patch, delete, deletecollection
    subresource: str | None = None      # "status" or "log"
    content_type: str | None = None     # request Content-Type (tells patch flavours apart)
    body: Any = None                    # parsed JSON/YAML request body, if any
    status: int | None = field(default=None)  # response code

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
