"""Several event-loop processes behind one port: ``python -m gateway`` with ``GATEWAY_WORKERS`` = N > 1.

One Python process proxies on one core at most. With N > 1 the process started by ``python -m gateway``
becomes a supervisor that serves nothing itself: it starts N workers (``python -m gateway`` again, marked
by ``GATEWAY_WORKER=<index>``), each of which binds ``GATEWAY_BIND`` with ``SO_REUSEPORT``, so the kernel
spreads new connections over them. Contract:

- SIGTERM / SIGINT to the supervisor go to every worker, which drains as a single gateway does; the
  supervisor exits once all have, with 0 if they all exited cleanly.
- A worker that dies is started again (its in-flight requests are lost, the others' are not), unless it
  died within ``CRASH_LOOP_SECONDS`` of its start: then the pod is broken (a bind that fails, bad
  settings) and the supervisor stops the others and exits 1 for Kubernetes to restart it.
- Metrics: the workers share one Prometheus multi-process directory (``PROMETHEUS_MULTIPROC_DIR``, a
  fresh temporary directory per supervisor, removed at exit), and whichever worker answers a scrape
  serves the sum over all of them (``gateway.metrics.exposition``). A dead worker's live gauges are
  removed (``mark_process_dead``); its counters stay counted, so totals never go backwards.

Each worker has its own memory (route/token/grant cache, feed subscription, hold queues, miss budgets,
traffic counters flushed under its own gateway id): docs/gateway.md ("Several workers") says what that
changes. This module imports nothing of the gateway's request path, so the supervisor stays small.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

log = logging.getLogger("gateway.workers")

WORKER_ENV = "GATEWAY_WORKER"
CRASH_LOOP_SECONDS = 5.0
RESTART_DELAY_SECONDS = 1.0


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def supervise(workers: int) -> int:
    """Run ``workers`` gateway processes until a signal stops them; returns the exit code."""
    from prometheus_client import multiprocess

    directory = tempfile.mkdtemp(prefix="gateway-metrics-")
    stopping = False
    procs: dict[int, tuple[int, subprocess.Popen, float]] = {}  # pid -> (index, process, started)

    def start(index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(index), "PROMETHEUS_MULTIPROC_DIR": directory}
        proc = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
        procs[proc.pid] = (index, proc, time.monotonic())

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for _, proc, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = 0
    try:
        for index in range(workers):
            start(index)
        log.info("gateway.workers started=%d metrics_dir=%s", workers, directory)
        while procs:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in procs:
                continue
            index, proc, started = procs.pop(pid)
            proc.returncode = os.waitstatus_to_exitcode(status)
            multiprocess.mark_process_dead(pid, path=directory)
            if stopping:
                code = code or (0 if proc.returncode in (0, -signal.SIGTERM, -signal.SIGINT) else 1)
                continue
            if time.monotonic() - started < CRASH_LOOP_SECONDS:
                log.error("gateway.worker_crash_loop worker=%d code=%s: stopping the pod", index, proc.returncode)
                code = 1
                forward(signal.SIGTERM, None)
                continue
            log.error("gateway.worker_died worker=%d code=%s: starting it again", index, proc.returncode)
            time.sleep(RESTART_DELAY_SECONDS)
            if not stopping:
                start(index)
    finally:
        for _, proc, _ in procs.values():  # only when this loop itself failed: leave no orphan behind
            proc.kill()
        shutil.rmtree(directory, ignore_errors=True)
    return code
