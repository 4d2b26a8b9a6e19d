"""Reconciling at scale on the real API server: endpoints on simulated nodes of the local cluster.

Run: ``make bench`` (``--endpoints 1000 --nodes 50``), or ``.venv/bin/python bench/cluster.py --smoke``.

Starts the local cluster (``scripts.localcluster``, in a temporary directory) with ``--nodes`` simulated
CPU nodes, registers it with the worker acting as the Helm chart's ServiceAccount, starts a real Celery
worker (prefork, 2 processes) and creates ``--endpoints`` endpoints at once through the service layer, in
accounts of 100. Prints, each beside its yardstick from the same run:

1. create -> running per endpoint (commit of the create -> the ``running`` state event), beside the part
   Kubernetes itself takes: each Deployment's creation -> its ``Available`` condition, as the API server
   stamps them (1 s resolution).
2. one drift sweep over the converged endpoints: wall time, and the requests and writes the API server
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


def run(env: dict, endpoints: int, nodes: int) -> None:
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
    from tests.factories import endpoint_spec, make_user

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
                spec = endpoint_spec(f"ep-{i}", model={"revision": sha})
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
            print(f"{endpoints} endpoints created at once, all running after {wall:.1f} s")
            print(f"  create -> running (ours, end to end):              {percentiles(ours, unit='s')}")
            print(f"  Deployment created -> Available (Kubernetes alone): {percentiles(kube, unit='s')}")

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
    args = bench_args(parser, endpoints=5, nodes=2)
    env = setup_django()
    run(env, args.endpoints, args.nodes)


if __name__ == "__main__":
    main()
