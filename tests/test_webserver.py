"""The web process's gunicorn hooks (controlplane.webserver)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import gc, sys
import django
django.setup()
from controlplane import webserver
assert "endpoints.views" not in sys.modules
webserver.post_worker_init(None)
print("views", "endpoints.views" in sys.modules, "frozen", gc.get_freeze_count())
"""


def test_a_worker_loads_every_view_then_freezes_its_heap():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[:2] == ["views", "True"]
    assert out[2] == "frozen" and int(out[3]) > 100_000, out
