"""Patch algorithms for the four PATCH content types.

Contract (all functions are pure: they return a new object and never mutate inputs):
- ``merge_patch(target, patch)``: RFC 7386 JSON merge patch (``null`` deletes a key, dicts
  merge recursively, everything else - lists included - replaces).
- ``strategic_merge_patch``: SIMPLIFIED to a merge patch. The real server merges lists such
  as ``containers`` by their ``name`` key and understands ``$patch``/``$retainKeys``
  directives; here lists are replaced wholesale, so a strategic patch that names only one
  of two containers leaves only that container. ``$patch`` keys are rejected with 400 so a
  caller depending on them notices.
- ``json_patch(target, ops)``: RFC 6902 (add/remove/replace/move/copy/test, RFC 6901
  pointers with ``~0``/``~1`` escapes and ``-`` for list append). A failing op raises
  ``ApiError(422)``, as the apiserver does.
- ``apply_merge(live, applied)``: SIMPLIFIED server-side apply. Fields in the applied
  config overwrite the live object (dicts merge recursively, lists replace); fields the
  manager stops sending are NOT removed and there is no conflict detection between field
  managers (``force`` is accepted and ignored), because managedFields are not tracked.
"""

from __future__ import annotations

import copy

from .errors import ApiError

APPLY = "application/apply-patch+yaml"


def media_type(content_type: str | None) -> str:
    """``application/merge-patch+json; charset=utf-8`` -> ``application/merge-patch+json``."""
    return (content_type or "").split(";")[0].strip().lower()


def algorithm_for(ctype: str):
    """The patch function for a (non-apply) PATCH media type; 415 for anything else."""
    algorithms = {
        "application/merge-patch+json": merge_patch,
        "application/strategic-merge-patch+json": strategic_merge_patch,
        "application/json-patch+json": json_patch,
    }
    if ctype not in algorithms:
        raise ApiError(415, f"the body of the request was in an unknown format - accepted "
                            f"media types include: {', '.join(algorithms)}, {APPLY}")
    return algorithms[ctype]


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _reject_directives(patch, path="") -> None:
    if isinstance(patch, dict):
        for key, value in patch.items():
            if key.startswith("$"):
                raise ApiError(400, f"fakekube does not implement strategic merge directive "
                                    f"{key!r} at {path or '/'}")
            _reject_directives(value, f"{path}/{key}")
    elif isinstance(patch, list):
        for i, item in enumerate(patch):
            _reject_directives(item, f"{path}/{i}")


def strategic_merge_patch(target, patch):
    if not isinstance(patch, dict):
        raise ApiError(400, "strategic merge patch body must be a JSON object")
    _reject_directives(patch)
    return merge_patch(target, patch)


def apply_merge(live, applied):
    """Overlay ``applied`` onto ``live``: dicts merge, everything else replaces."""
    if not isinstance(applied, dict) or not isinstance(live, dict):
        return copy.deepcopy(applied)
    result = copy.deepcopy(live)
    for key, value in applied.items():
        result[key] = apply_merge(result.get(key), value)
    return result


# ---- RFC 6902 ----

def _parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {pointer!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def _index(container: list, token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise ApiError(422, f"invalid list index {token!r}")
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise ApiError(422, f"list index {idx} out of range")
    return idx


def _parent(doc, tokens: list[str], pointer: str):
    cur = doc
    for token in tokens[:-1]:
        if isinstance(cur, dict) and token in cur:
            cur = cur[token]
        elif isinstance(cur, list):
            cur = cur[_index(cur, token, allow_end=False)]
        else:
            raise ApiError(422, f"doc is missing path: {pointer!r}")
    return cur


def _get(doc, pointer: str):
    tokens = _parse_pointer(pointer)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ApiError(422, f"doc is missing path: {pointer!r}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise ApiError(422, f"doc is missing path: {pointer!r}")


def _add(doc, pointer: str, value):
    tokens = _parse_pointer(pointer)
    if not tokens:
        return value
    parent = _parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise ApiError(422, f"doc is missing path: {pointer!r}")
    return doc


def _remove(doc, pointer: str):
    tokens = _parse_pointer(pointer)
    if not tokens:
        raise ApiError(422, "cannot remove the whole document")
    parent = _parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise ApiError(422, f"unable to remove nonexistent key: {pointer!r}")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, allow_end=False)]
    else:
        raise ApiError(422, f"doc is missing path: {pointer!r}")
    return doc


def json_patch(target, ops):
    if not isinstance(ops, list):
        raise ApiError(400, "json patch body must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, f"malformed json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ApiError(400, f"json patch operation {kind} requires 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # replace requires the target to exist
            doc = _remove(doc, path) if _parse_pointer(path) else doc
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise ApiError(400, f"json patch operation {kind} requires 'from'")
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise ApiError(422, f"testing value {path} failed")
        else:
            raise ApiError(400, f"unknown json patch operation {kind!r}")
    return doc
