"""Label and field selectors, with the apiserver's matching rules.

Contract:
- ``parse_label_selector(text)`` returns a predicate over a labels dict; it supports
  ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``, joined by
  commas. ``!=`` and ``notin`` match objects that lack the key, as in Kubernetes.
  Malformed text raises ``ApiError(400)`` like the real server.
- ``parse_field_selector(text, plural)`` returns a predicate over a whole object; only the
  fields the real server indexes for that kind are accepted, anything else is a 400, so a
  caller relying on an unsupported field finds out here and not in production.
- ``match_label_selector(selector_obj, labels)`` evaluates a LabelSelector object
  (matchLabels / matchExpressions), used for Deployment selectors.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import ApiError

Labels = dict[str, str]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_requirements(text: str) -> list[str]:
    """Split on commas that are not inside ``( ... )`` (set values use commas too)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _requirement(req: str) -> Callable[[Labels], bool]:
    m = _SET_RE.match(req)
    if m:
        key, op, raw = m.group(1), m.group(3), m.group(4)
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    m = _EQ_RE.match(req)
    if m:
        key, op, value = m.group(1), m.group(3), m.group(4)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _EXISTS_RE.match(req)
    if m:
        negate, key = m.group(1) == "!", m.group(2)
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise ApiError(400, f"unable to parse requirement: {req.strip()!r}")


def parse_label_selector(text: str | None) -> Callable[[Labels], bool]:
    if not text or not text.strip():
        return lambda labels: True
    reqs = [_requirement(r) for r in _split_requirements(text)]
    return lambda labels: all(r(labels or {}) for r in reqs)


# Field selectors the real apiserver supports per kind (metadata.* work for every kind).
_FIELDS = {
    "pods": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion",
               "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
               "reportingComponent", "source", "type"},
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "replicasets": {"status.replicas"},
}


def _dig(obj: dict, dotted: str) -> str:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    return str(cur)


def parse_field_selector(text: str | None, plural: str) -> Callable[[dict], bool]:
    if not text or not text.strip():
        return lambda obj: True
    allowed = {"metadata.name", "metadata.namespace"} | _FIELDS.get(plural, set())
    preds = []
    for req in _split_requirements(text):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*$", req)
        if not m:
            raise ApiError(400, f"invalid field selector: {req.strip()!r}")
        field, op, value = m.groups()
        if field not in allowed:
            raise ApiError(400, f'field label not supported: {field}')
        if op == "!=":
            preds.append(lambda o, f=field, v=value: _dig(o, f) != v)
        else:
            preds.append(lambda o, f=field, v=value: _dig(o, f) == v)
    return lambda obj: all(p(obj) for p in preds)


def match_label_selector(selector: dict | None, labels: Labels | None) -> bool:
    """Evaluate a LabelSelector object. An empty/None selector matches everything."""
    labels = labels or {}
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_to_query(selector: dict | None) -> str:
    """Render a LabelSelector object as a query string (used for HPA status.selector)."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key = expr.get("operator"), expr.get("key")
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(expr.get('values') or [])})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append("!" + key)
    return ",".join(parts)
