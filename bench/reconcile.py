"""Reconciler figures: create->applied latency with a real worker, and a no-op drift sweep at scale.

Run: ``make install && .venv/bin/python bench/reconcile.py [--endpoints 30] [--drift 10000]``

1. Starts a real Celery worker (prefork, 2 processes) against a fresh bench database, the fake Kubernetes
   API server and a stub Hub; creates endpoints through the service layer one after another and times
   each from commit to "applied" (objects written, ``observed_generation`` current).
2. Seeds ``--drift`` converged endpoints (rows and their live objects, inserted straight into the fake's
   store), runs the drift sweep once, and prints its wall time, the Kubernetes requests it made and the
   writes (which must be 0).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, bench_args, percentiles, setup_django  # noqa: E402


def create_to_applied(env: dict, count: int) -> None:
    from deployments.services import cluster_register
    from endpoints.models import Endpoint
    from endpoints.services import endpoint_create
    from quotas.services import quota_set
    from tests.factories import endpoint_spec, make_user
    from tests.fakehub import FakeHub
    from tests.fakekube import FakeKube

    hub = FakeHub().start()
    with FakeKube(pod_ready_seconds=0.2) as kube, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kubeconfig"
        kube.write_kubeconfig(str(path))
        cluster = cluster_register(name="bench", vendor="aws", region="us-east-1",
                                   kubeconfig_text=path.read_text(), ingress_domain="bench.test")
        user = make_user("latency")
        quota_set(account=user.personal_account, accelerator="cpu", limit=10_000)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--concurrency", "2", "--loglevel",
             "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env={**env, "HF_HUB_URL": hub.url})
        try:
            time.sleep(3)  # worker start-up is not part of the figure
            samples, running = [], []
            for i in range(count):
                started = time.perf_counter()
                endpoint = endpoint_create(account=user.personal_account, spec=endpoint_spec(f"lat-{i}"), actor=user)
                while not Endpoint.objects.filter(pk=endpoint.pk, first_applied_at__isnull=False,
                                                  observed_generation=endpoint.generation).exists():
                    time.sleep(0.005)
                samples.append(time.perf_counter() - started)
                while Endpoint.objects.filter(pk=endpoint.pk).values_list("state", flat=True)[0] != "running":
                    time.sleep(0.01)
                running.append(time.perf_counter() - started)
            print(f"create -> applied (real worker, fake API server): {percentiles(samples)}")
            print(f"create -> running (pods ready after 0.2 s in the fake): {percentiles(running)}")
        finally:
            worker.terminate()
            worker.wait(30)
            hub.stop()
            cluster.__class__.objects.filter(pk=cluster.pk).update(enabled=False)  # its API server is gone


def drift_at_scale(count: int) -> None:
    from django.utils import timezone

    from controlplane.services import user_create
    from deployments.apply import stamped
    from deployments.drift import drift_sweep
    from deployments.render import render_endpoint
    from deployments.services import cluster_register
    from deployments.targets import platform, target_for
    from endpoints.models import Endpoint, State
    from quotas.models import InstanceType
    from tests.fakekube import FakeKube
    from tests.fakekube.resources import RESOURCES

    plurals = {"Secret": "secrets", "Deployment": "deployments", "Service": "services",
               "HorizontalPodAutoscaler": "horizontalpodautoscalers", "NetworkPolicy": "networkpolicies"}
    # The fake's controllers would start 10,000 simulated rollouts; this measures the sweep alone.
    with FakeKube(controller_interval=3600) as kube, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kubeconfig"
        kube.write_kubeconfig(str(path))
        cluster = cluster_register(name="drift", vendor="aws", region="eu-west-1", kubeconfig_text=path.read_text())
        instance = InstanceType.objects.get(vendor="aws", region="eu-west-1", instance_type="intel-spr",
                                            instance_size="x1")
        accounts = [user_create(username=f"tenant{i}").personal_account for i in range(count // 100 or 1)]
        now, rows = timezone.now(), []
        for i in range(count):
            rows.append(Endpoint(account=accounts[i % len(accounts)], name=f"ep-{i}", instance=instance,
                                 repository="gpt2", framework="pytorch", image={"huggingface": {}},
                                 pinned_revision="1" * 40, state=State.RUNNING, generation=1, observed_generation=1,
                                 first_applied_at=now))
        Endpoint.objects.bulk_create(rows, batch_size=2000)
        seeded = 0
        for endpoint in Endpoint.objects.select_related("instance", "account").filter(instance=instance):
            for obj in render_endpoint(target_for(endpoint, cluster), platform()):
                kube.store.insert(RESOURCES[plurals[obj["kind"]]], stamped(obj))
                seeded += 1
        kube.clear_requests()
        queued = []
        started = time.perf_counter()
        report = drift_sweep(enqueue=queued.append)
        elapsed = time.perf_counter() - started
        print(f"drift sweep over {report.endpoints_checked} converged endpoints ({seeded} live objects): "
              f"{elapsed:.2f} s wall · {len(kube.requests)} Kubernetes requests "
              f"({report.list_calls} LISTs, one per kind per cluster) · {len(kube.writes())} writes · "
              f"{len(report.drifted)} drifted")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", type=int, default=30)
    parser.add_argument("--drift", type=int, default=10_000)
    args = bench_args(parser, endpoints=2, drift=20)
    env = setup_django()
    create_to_applied(env, args.endpoints)
    drift_at_scale(args.drift)


if __name__ == "__main__":
    main()
