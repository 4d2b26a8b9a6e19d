"""Admission-time validation: schema, names, labels and a few semantic rules.

Contract: ``validate_object(rt, obj, k8s_version, old=None)`` raises ``ApiError(422,
reason="Invalid")`` when the apiserver would refuse the object, and returns None otherwise.
It runs on the object as the client sent it (or as the patch produced it), before server
defaulting and server fields are added.

What it checks:
- the OpenAPI schema of ``k8s_version`` through ``kubernetes_validate.validate(...,
  strict=True)`` - unknown fields and wrong types fail (the real server's default for
  unknown fields is to drop them with a warning; this fake is deliberately stricter so a
  typo in a manifest fails in tests);
- metadata.name: DNS-1123 subdomain, DNS-1123 label for namespaces, DNS-1035 label for
  services; label keys/values and container names;
- Deployments/ReplicaSets: spec.selector required, must match the template labels, and is
  immutable on update (all real apiserver rules that reconcilers commonly trip over).
"""

from __future__ import annotations

import re

import kubernetes_validate

from .errors import ApiError, invalid
from .resources import ResourceType
from .selectors import match_label_selector

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_LABEL_RE = re.compile(rf"^{_LABEL}$")
_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def name_errors(name: str, rule: str) -> list[str]:
    """Messages for an invalid object name under ``rule`` (empty list if valid)."""
    if rule == "label":
        if len(name) > 63 or not _LABEL_RE.match(name):
            return [f"a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    f"characters or '-', and must start and end with an alphanumeric "
                    f"character (at most 63 characters), got {name!r}"]
    elif rule == "dns1035":
        if len(name) > 63 or not _DNS1035_RE.match(name):
            return [f"a DNS-1035 label must consist of lower case alphanumeric characters or "
                    f"'-', start with an alphabetic character, and end with an alphanumeric "
                    f"character (at most 63 characters), got {name!r}"]
    elif len(name) > 253 or not _SUBDOMAIN_RE.match(name):
        return [f"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                f"characters, '-' or '.', and must start and end with an alphanumeric "
                f"character (at most 253 characters), got {name!r}"]
    return []


def _label_errors(labels, field: str) -> list[tuple[str, str]]:
    errors = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _SUBDOMAIN_RE.match(prefix)):
            errors.append((f"{field}", f"invalid label key prefix in {key!r}"))
        if not name or len(name) > 63 or not _LABEL_NAME_RE.match(name):
            errors.append((f"{field}", f"invalid label key {key!r}"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE_RE.match(value):
            errors.append((f"{field}[{key}]", f"invalid label value {value!r}: must be 63 "
                                              f"characters or less and alphanumeric at both ends"))
    return errors


def _pod_spec_errors(spec: dict | None, field: str) -> list[tuple[str, str]]:
    errors = []
    for i, c in enumerate((spec or {}).get("containers") or []):
        name = c.get("name", "")
        if len(name) > 63 or not _LABEL_RE.match(name):
            errors.append((f"{field}.containers[{i}].name",
                           f"invalid container name {name!r}: must be a DNS-1123 label"))
    return errors


def _workload_errors(rt: ResourceType, obj: dict, old: dict | None) -> list[tuple[str, str]]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    template = spec.get("template") or {}
    errors = _label_errors((template.get("metadata") or {}).get("labels"),
                           "spec.template.metadata.labels")
    errors += _pod_spec_errors(template.get("spec"), "spec.template.spec")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errors.append(("spec.selector", "Required value"))
    elif not match_label_selector(selector, (template.get("metadata") or {}).get("labels")):
        errors.append(("spec.template.metadata.labels",
                       "Invalid value: `selector` does not match template `labels`"))
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        errors.append(("spec.selector", "Invalid value: field is immutable"))
    if not (template.get("spec") or {}).get("containers"):
        errors.append(("spec.template.spec.containers", "Required value"))
    return errors


def _schema_errors(obj: dict, k8s_version: str) -> list[tuple[str, str]]:
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [(path, e.message)]
    except kubernetes_validate.SchemaNotFoundError as e:
        # Only kinds with schemas are served (see resources.py), so this is a fake bug.
        raise ApiError(500, f"fakekube: {e.message}") from None
    return []


def validate_object(rt: ResourceType, obj: dict, k8s_version: str,
                    old: dict | None = None) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    errors = _schema_errors(obj, k8s_version)
    if not errors:  # semantic checks assume the shapes the schema guarantees
        errors += [("metadata.name", m) for m in name_errors(name, rt.name_rule)]
        errors += _label_errors(meta.get("labels"), "metadata.labels")
        if rt.plural in ("deployments", "replicasets"):
            errors += _workload_errors(rt, obj, old)
        if rt.plural == "pods":
            errors += _pod_spec_errors(obj.get("spec"), "spec")
        if rt.plural == "horizontalpodautoscalers":
            spec = obj.get("spec") or {}
            if (spec.get("minReplicas") or 1) > (spec.get("maxReplicas") or 0):
                errors.append(("spec.minReplicas",
                               "Invalid value: must be less than or equal to maxReplicas"))
    if errors:
        raise invalid(rt, name, errors)
