"""One error vocabulary: every machine code the API and the gateway answer with is in
``controlplane.errorcodes.Code``, raised by name (never as a string literal), used somewhere, and
documented in docs/errors.md with the meaning the module gives it."""

import ast
import asyncio
import json
import re
from pathlib import Path

from controlplane.errorcodes import MEANING, Code
from controlplane.errors import DRF_CODES
from gateway.access import authorize

ROOT = Path(__file__).resolve().parent.parent
APPS = ("controlplane", "quotas", "endpoints", "deployments", "workers", "gateway")
# Django form and validator codes (inside ``fields`` or the admin login form), not API codes.
DJANGO_LEVEL = {"controlplane/validators.py", "controlplane/loginlimit.py", "controlplane/errorcodes.py"}


def sources():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "migrations" not in path.parts and relative not in DJANGO_LEVEL:
                yield relative, path.read_text()


def literal_codes(source: str) -> list[tuple[int, str]]:
    """String literals in the places an error code goes: ``code=``, ``code = ...`` in a class, a ``"code"``
    dict key, the code argument of ``error_body(message, code)`` and the gateway's ``error(status, code)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            values = [k.value for k in node.keywords if k.arg == "code"]
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ("error", "error_body") and len(node.args) >= 2:
                values.append(node.args[1])
            found.extend((v.lineno, v.value) for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "code" for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                found.append((node.lineno, node.value.value))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code" and isinstance(value, ast.Constant):
                    found.append((value.lineno, value.value))
    return found


def test_no_error_code_is_written_as_a_string():
    literals = [f"{path}:{line} {value!r}" for path, text in sources() for line, value in literal_codes(text)]
    assert literals == [], "raise codes by name (controlplane.errorcodes.Code):\n" + "\n".join(literals)


def test_the_scan_finds_each_kind_of_literal():
    source = ('raise Conflict("x", code="name_taken")\nclass E:\n    code = "state_conflict"\n'
              'error(404, "not_found", "m")\nerror_body("m", "invalid")\nJsonResponse({"code": "internal_error"})\n')
    assert [value for _, value in literal_codes(source)] == ["name_taken", "state_conflict", "not_found", "invalid",
                                                            "internal_error"]
    assert literal_codes('raise Conflict("x", code=Code.NAME_TAKEN)\n') == []


def test_every_code_is_used_and_means_something():
    text = "\n".join(source for _, source in sources())
    used = set(re.findall(r"\bCode\.([A-Z_]+)\b", text))
    assert {c.name for c in Code} - used == set(), "codes nothing raises"
    assert set(MEANING) == set(Code)
    assert len({c.value for c in Code}) == len(Code)
    assert set(DRF_CODES.values()) <= set(Code)


def test_the_docs_list_every_code_with_its_meaning():
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (.+) \|$", (ROOT / "docs" / "errors.md").read_text(), re.M))
    assert rows == {c.value: MEANING[c] for c in Code}


def test_the_api_and_the_gateway_say_unauthenticated_for_a_missing_token(client):
    api = client.get("/v2/endpoint/alice")
    gateway = asyncio.run(authorize({"type": "protected"}, None, cache=None))
    assert (api.status_code, api.json()["code"]) == (401, "unauthenticated"), api.content
    assert (gateway.status, json.loads(gateway.text)["code"]) == (401, "unauthenticated"), gateway.text
