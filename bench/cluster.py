"""Reconciling at scale on the real API server: endpoints on simulated nodes of the local cluster.

Run: ``make bench`` (``--endpoints 1000 --nodes 50``), or ``.venv/bin/python bench/cluster.py --smoke``.

Starts the local cluster (``scripts.localcluster``, in a temporary directory) with ``--nodes`` simulated
CPU nodes, registers it with the worker acting as the Helm chart's ServiceAccount, starts a real Celery
worker (prefork, 2 processes) and creates ``--endpoints`` endpoints at once through the service layer, in
accounts of 100. Prints, each beside its yardstick from the same run:

1. create -> running per endpoint (commit of the create -> the ``running`` state event), beside the part
   Kubernetes itself takes: each Deployment's creation -> its ``Available`` condition, as the API server
   stamps them (1 s resolution).
2. the same again with the cluster watcher running (``deployments.watch``, in this process): create ->
   running, and pod ready (the moment the watch saw it) -> ``running`` in the API, beside the polling-only
   figure of 1.; then ``--singles`` endpoints created one at a time, pod ready -> ``running`` beside
   Kubernetes' own part of it (pod ready -> the Deployment reports itself available); then the watcher's
   own requests to the API server over an idle minute.
3. one drift sweep over the converged endpoints: wall time, and the requests and writes the API server
   audited for the worker, beside the admin listing the same kinds across all namespaces once (the least a
   sweep can read).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, bench_args, percentiles, setup_django  # noqa: E402

ENDPOINT_PATHS = ("/apis/apps/v1/deployments", "/api/v1/services", "/api/v1/secrets",
                  "/apis/autoscaling/v2/horizontalpodautoscalers", "/apis/networking.k8s.io/v1/networkpolicies")


def stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def watched(accounts: list, endpoints: int, sha: str, polling: list[float], idle: float, singles: int) -> None:
    """Phase 2: the same creates with the watcher running, then ``singles`` created one at a time (each
    waited for); latency figures and the watcher's idle request rate."""
    import threading

    from django.db import connections

    from deployments.watch import Watcher
    from endpoints.models import Endpoint, EndpointEvent
    from endpoints.services import endpoint_create

    watcher = Watcher(trace=True)
    thread = threading.Thread(target=lambda: (watcher.run(), connections.close_all()), daemon=True)
    thread.start()
    try:
        if not watcher.wait_started(60):
            raise SystemExit("the watcher did not start")
        created = {}
        for i in range(endpoints):
            account = accounts[i // 100]
            endpoint = endpoint_create(account=account, spec=_spec(f"w-{i}", sha), actor=account.user)
            created[endpoint.pk] = endpoint.created_at.timestamp()
        deadline = time.monotonic() + max(300, endpoints)
        while Endpoint.objects.filter(pk__in=created, state="running").count() < endpoints:
            if time.monotonic() > deadline:
                raise SystemExit("the watched endpoints did not all reach running")
            time.sleep(0.2)
        reached = {e: t.timestamp() for e, t in EndpointEvent.objects.filter(
            endpoint_id__in=created, to_state="running").values_list("endpoint_id", "created_at")}
        ours = [reached[pk] - created[pk] for pk in created]
        ready = [reached[pk] - watcher.stats.ready_seen[pk] for pk in created if pk in watcher.stats.ready_seen]
        print(f"with the watcher: create -> running {percentiles(ours, unit='s')}  "
              f"(polling only: p50 {sorted(polling)[len(polling) // 2]:.2f} s)")
        print(f"  pod ready (seen by the watch) -> running in the API: {percentiles(ready)}")
        one_at_a_time(accounts[0], singles, sha, watcher)
        before = watcher.stats.lists + watcher.stats.watches
        time.sleep(idle)
        made = watcher.stats.lists + watcher.stats.watches - before
        print(f"  the watcher's requests to the API server over {idle:.0f} s idle: {made} "
              f"(one watch per kind per {watcher_timeout()} s, whatever the endpoint count)")
    finally:
        watcher.stop.set()
        thread.join(10)


def one_at_a_time(account, count: int, sha: str, watcher) -> None:
    """``count`` endpoints created one after another, each waited for: pod ready -> running in the API
    beside Kubernetes' own part (pod ready -> its Deployment complete and available, as the watch saw both)."""
    from endpoints.models import Endpoint, EndpointEvent
    from endpoints.services import endpoint_create

    created = []
    for i in range(count):
        endpoint = endpoint_create(account=account, spec=_spec(f"one-{i}", sha), actor=account.user)
        deadline = time.monotonic() + 120
        while not Endpoint.objects.filter(pk=endpoint.pk, state="running").exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"one-{i} did not reach running")
            time.sleep(0.01)
        created.append(endpoint.pk)
    reached = {e: t.timestamp() for e, t in EndpointEvent.objects.filter(
        endpoint_id__in=created, to_state="running").values_list("endpoint_id", "created_at")}
    seen = watcher.stats
    traced = [pk for pk in created if pk in seen.ready_seen and pk in seen.available_seen]
    ours = [reached[pk] - seen.ready_seen[pk] for pk in traced]
    controllers = [max(0.0, seen.available_seen[pk] - seen.ready_seen[pk]) for pk in traced]
    print(f"  one at a time: pod ready -> running in the API: {percentiles(ours)}")
    print(f"    Kubernetes' part (pod ready -> Deployment available, as the watch saw both): {percentiles(controllers)}")


def watcher_timeout() -> int:
    from django.conf import settings

    return settings.WATCH_TIMEOUT_SECONDS


def _spec(name: str, sha: str) -> dict:
    from tests.factories import endpoint_spec

    return endpoint_spec(name, model={"revision": sha})


def run(env: dict, endpoints: int, nodes: int, idle: float, singles: int) -> None:
    from django.conf import settings

    from deployments.drift import drift_sweep
    from deployments.names import owned_selector
    from deployments.services import cluster_register
    from endpoints.models import Endpoint, EndpointEvent
    from endpoints.services import endpoint_create
    from quotas.services import quota_set
    from scripts.localcluster import LocalCluster, default_pools
    from scripts.localcluster.cluster import WRITE_VERBS
    from scripts.localcluster.worker import worker_kubeconfig
    from tests.factories import make_user

    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", pools=default_pools(nodes))
        print(f"local cluster with {nodes} simulated CPU nodes up in {cluster.up(quiet=True):.1f} s")
        worker = None
        try:
            text, user = worker_kubeconfig(cluster)
            registered = cluster_register(name="bench", vendor="aws", region="us-east-1", kubeconfig_text=text,
                             ingress_domain="bench.test")
            accounts = []
            for i in range((endpoints + 99) // 100):
                account = make_user(f"tenant{i}").personal_account
                quota_set(account=account, accelerator="cpu", limit=10_000)
                accounts.append(account)
            sha = "b" * 40  # a full commit: no Hub call
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--concurrency", "2",
                 "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL)
            time.sleep(3)  # worker start-up is not part of the figure

            started = time.monotonic()
            created = {}
            for i in range(endpoints):
                account = accounts[i // 100]
                spec = _spec(f"ep-{i}", sha)
                endpoint = endpoint_create(account=account, spec=spec, actor=account.user)
                created[endpoint.pk] = endpoint.created_at.timestamp()
            deadline = time.monotonic() + max(300, endpoints)
            while (running := Endpoint.objects.filter(state="running").count()) < endpoints:
                failed = list(Endpoint.objects.filter(state__in=["failed", "updateFailed"])
                              .values_list("name", "message")[:3])
                if failed or time.monotonic() > deadline:
                    raise SystemExit(f"{running}/{endpoints} running after {time.monotonic() - started:.0f} s; "
                                     f"failed: {failed}")
                time.sleep(1)
            wall = time.monotonic() - started
            reached = {e: t.timestamp() for e, t in EndpointEvent.objects.filter(
                endpoint_id__in=created, to_state="running").values_list("endpoint_id", "created_at")}
            ours = [reached[pk] - created[pk] for pk in created]
            kube = []
            for account in accounts:
                listing = cluster.request("GET", f"/apis/apps/v1/namespaces/ie-{account.slug}/deployments",
                                          timeout=60)
                for d in listing["items"]:
                    available = [c for c in d["status"].get("conditions", []) if c["type"] == "Available"]
                    kube.append(stamp(available[0]["lastTransitionTime"]) - stamp(d["metadata"]["creationTimestamp"]))
            print(f"{endpoints} endpoints created at once, all running after {wall:.1f} s (polling only)")
            print(f"  create -> running (ours, end to end):              {percentiles(ours, unit='s')}")
            print(f"  Deployment created -> Available (Kubernetes alone): {percentiles(kube, unit='s')}")
            watched(accounts, endpoints, sha, ours, idle, singles)

            worker.terminate()
            worker.wait(30)
            worker = None
            mark = cluster.audit_mark()
            queued = []
            t0 = time.perf_counter()
            report = drift_sweep(enqueue=queued.append)
            sweep = time.perf_counter() - t0
            time.sleep(1)  # the audit log is written asynchronously
            requests = cluster.audited(user, mark)
            writes = [e for e in requests if e["verb"] in WRITE_VERBS]
            owned = owned_selector(settings.INSTALLATION_ID, registered.pk)
            t0 = time.perf_counter()
            for path in ENDPOINT_PATHS:
                cluster.request("GET", f"{path}?labelSelector={owned}", timeout=120)
            bare = time.perf_counter() - t0
            print(f"drift sweep over {report.endpoints_checked} converged endpoints: {sweep:.2f} s wall · "
                  f"{len(requests)} requests · {len(writes)} writes · {len(report.drifted)} drifted")
            print(f"  the admin listing the same {len(ENDPOINT_PATHS)} kinds once, nothing else: {bare:.2f} s")
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(30)
            cluster.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60, help="seconds the watcher's idle requests are counted")
    parser.add_argument("--singles", type=int, default=20, help="endpoints then created one at a time")
    args = bench_args(parser, endpoints=5, nodes=2, idle=2, singles=2)
    env = setup_django()
    run(env, args.endpoints, args.nodes, args.idle, args.singles)


if __name__ == "__main__":
    main()
