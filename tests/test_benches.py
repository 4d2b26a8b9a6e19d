"""Every benchmark runs, in smoke mode (tiny sizes), and prints its figures: none can rot unnoticed.

The figures themselves are never asserted (performance is measured by ``make bench``, not gated here).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHES = sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name not in {"__init__.py", "harness.py"})
# The line each bench prints with its figures: proof it got to the end, not just that it exited 0.
FIGURES = {"admission.py": "create calls/s", "reconcile.py": "drift sweep over", "gateway.py": "req/s",
           "cluster.py": "drift sweep over", "console.py": "console overview at"}

pytestmark = [pytest.mark.slow]


def test_every_bench_is_known():
    assert set(BENCHES) == set(FIGURES), "a new bench needs its figures line here and a place in make bench"
    makefile = (REPO / "Makefile").read_text()
    assert all(f" {name[:-3]}" in makefile.split("BENCHES :=")[1].splitlines()[0] for name in BENCHES)


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_runs_in_smoke_mode(bench, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_TASK_DEFAULT_QUEUE", "DJANGO_SETTINGS_MODULE"}}
    done = subprocess.run([sys.executable, f"bench/{bench}", "--smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert FIGURES[bench] in done.stdout, done.stdout
