"""The apps depend on each other in one direction, and the gateway only on the shared pure modules.

    controlplane <- quotas <- endpoints <- deployments <- workers
         ^
         '-- gateway (controlplane.settings, .records, .names, .errorcodes, .traffic only)

A module may import its own app and the apps to its left, never one to its right: module-level and lazy
(function-level) imports alike, since a lazy import is the same dependency, only hidden. The composition
root (``controlplane.urls`` mounting every app's views, ``controlplane.celery`` scheduling tasks by name)
is the one place that sees every app. Layers below talk upwards through Django signals
(``endpoints.signals``, ``post_save``) and queue work by task name (``controlplane.queue``).
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("controlplane", "quotas", "endpoints", "deployments", "workers")
APPS = (*ORDER, "gateway")
COMPOSITION_ROOT = {"controlplane.urls", "controlplane.celery"}
GATEWAY_MAY_IMPORT = {"controlplane.settings", "controlplane.records", "controlplane.names", "controlplane.errorcodes",
                      "controlplane.traffic"}
# Imported by the gateway process, which never sets Django up: the standard library only (and each other).
PURE = {"controlplane.records", "controlplane.names", "controlplane.images", "controlplane.errorcodes",
        "controlplane.traffic"}


def imports_of(source: str, module: str, *, package: bool = False) -> list[tuple[int, str]]:
    """(line, imported name) for every import in ``source``: ``import a.b`` gives ``a.b``, ``from a import b``
    gives ``a.b`` (a module or a name in one); relative imports are resolved against ``module`` (a package
    when ``package``)."""
    parts = module.split(".") if package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = parts[:len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _within(target: str, modules: set[str]) -> bool:
    return any(target == m or target.startswith(m + ".") for m in modules)


def violations(source: str, module: str, *, package: bool = False) -> list[str]:
    """Why ``module`` (dotted, within an app) breaks the graph; empty when it does not."""
    app = module.split(".")[0]
    problems = []
    for line, target in imports_of(source, module, package=package):
        top = target.split(".")[0]
        where = f"{module}:{line} imports {target}"
        if module in PURE:
            if top not in sys.stdlib_module_names and not _within(target, PURE):
                problems.append(f"{where}: the gateway's shared modules use the standard library only")
            continue
        if top not in APPS or top == app:
            continue
        if top == "gateway":
            problems.append(f"{where}: nothing imports the gateway")
        elif app == "gateway":
            if not _within(target, GATEWAY_MAY_IMPORT):
                problems.append(f"{where}: the gateway imports only {sorted(GATEWAY_MAY_IMPORT)}")
        elif module not in COMPOSITION_ROOT and ORDER.index(top) > ORDER.index(app):
            problems.append(f"{where}: {app} is below {top} ({' <- '.join(ORDER)})")
    return problems


def app_modules():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            package = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if package else parts), path, package


def test_no_import_goes_against_the_app_order():
    problems = [p for module, path, package in app_modules()
                for p in violations(path.read_text(), module, package=package)]
    assert problems == [], "\n".join(problems)


def test_every_app_module_is_checked():
    modules = {module for module, _, _ in app_modules()}
    assert {"controlplane.records", "endpoints.services", "deployments.reconcile", "workers.tasks",
            "gateway.app", "quotas.services"} <= modules
    assert len(modules) > 60


@pytest.mark.parametrize(("module", "source", "reason"), [
    ("quotas.selectors", "def f():\n    from endpoints.models import Endpoint\n", "quotas is below endpoints"),
    ("controlplane.services", "from . import x\nfrom quotas.services import quota_set\n", "controlplane is below quotas"),
    ("endpoints.services", "import workers.tasks\n", "endpoints is below workers"),
    ("controlplane.admin", "from gateway.records import TOKEN_PREFIX\n", "nothing imports the gateway"),
    ("gateway.app", "from deployments.names import host_id\n", "the gateway imports only"),
    ("gateway.db", "from controlplane.models import Account\n", "the gateway imports only"),
    ("controlplane.records", "from django.conf import settings\n", "standard library only"),
    ("deployments.feed", "from ..workers import tasks\n", "deployments is below workers"),
])
def test_the_checker_refuses_each_kind_of_violation(module, source, reason):
    found = violations(source, module)
    assert len(found) == 1 and reason in found[0], found


def test_the_checker_allows_the_order():
    assert violations("from controlplane.models import Account\nfrom quotas.models import Quota\n",
                      "endpoints.models") == []
    assert violations("from endpoints import views\nfrom workers import tasks\n", "controlplane.urls") == []
    assert violations("from controlplane import records\nfrom controlplane.names import host_id\n",
                      "gateway.db") == []
