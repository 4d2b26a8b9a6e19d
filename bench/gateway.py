"""Gateway overhead: the same load straight to a stub upstream and through ``python -m gateway``, in one run.

Run: ``make install && .venv/bin/python bench/gateway.py [--clients 64] [--seconds 10] [--processes 2]``

Starts the stub upstream (an aiohttp app answering a small JSON body) and the gateway as processes of
their own, registers a cluster whose Services all resolve to the stub, and deploys a *protected* endpoint,
so every request through the gateway is routed, token-checked and proxied (the warm path: memory only).
``clients`` keep-alive connections spread over ``processes`` load processes send requests back to back
for ``seconds`` per phase, after a warm-up. Prints requests/s and p50/p99 latency for both phases, the
ratios, and the SQL statements the gateway ran during the measured phase (0 expected).
"""

import argparse
import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, bench_args, percentiles, setup_django  # noqa: E402

BODY = b'{"generated_text": "hello"}'
METRICS_TOKEN = "bench-metrics-token"  # the gateway serves its metrics only for a token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_upstream(port: int) -> None:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def wait_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def _load(url: str, headers: dict, clients: int, seconds: float, out) -> None:
    """One load process: ``clients`` concurrent loops on keep-alive connections; sends (count, latencies)."""
    import aiohttp

    async def run() -> tuple[int, list[float], int]:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=clients, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def loop() -> None:
                nonlocal errors
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    async with session.post(url, data=b'{"inputs": "hi"}', headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(loop() for _ in range(clients)))
        return len(latencies), latencies, errors

    out.send(asyncio.run(run()))


def measure(url: str, headers: dict, clients: int, seconds: float, processes: int) -> tuple[float, list[float], int]:
    """Requests/s, all latencies and errors over ``seconds`` with ``clients`` spread over ``processes``."""
    context = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    per = max(clients // processes, 1)
    for _ in range(processes):
        receive, send = context.Pipe(duplex=False)
        proc = context.Process(target=_load, args=(url, headers, per, seconds, send))
        proc.start()
        pipes.append(receive)
        procs.append(proc)
    count, latencies, errors = 0, [], 0
    for pipe in pipes:
        n, samples, failed = pipe.recv()
        count, errors = count + n, errors + failed
        latencies.extend(samples)
    for proc in procs:
        proc.join()
    return count / seconds, latencies, errors


def gateway_queries(port: int) -> float:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/_gateway/metrics",
                                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    text = urllib.request.urlopen(request, timeout=5).read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("gateway_db_queries_total"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = bench_args(parser, clients=4, seconds=0.5, processes=1)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    env = setup_django()
    from controlplane.services import token_create, user_create
    from deployments import feed
    from deployments.services import cluster_register
    from endpoints import services
    from endpoints.models import Endpoint
    from tests.factories import endpoint_spec

    upstream_port, gateway_port = free_port(), free_port()
    cluster_register(name="bench", vendor="aws", region="us-east-1", in_cluster=True, ingress_domain="bench.test",
                     service_url_template=f"http://127.0.0.1:{upstream_port}")
    user = user_create(username="bench")
    _, token = token_create(user=user, name="bench")
    endpoint = services.endpoint_create(account=user.personal_account, spec=endpoint_spec("llm", type="protected"),
                                        actor=user)
    Endpoint.objects.filter(pk=endpoint.pk).update(state="running")
    feed.route_publish(account_slug="bench", name="llm")

    children = [subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(upstream_port)], cwd=REPO, env=env),
                subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO,
                                 env={**env, "GATEWAY_BIND": f"127.0.0.1:{gateway_port}", "LOG_LEVEL": "WARNING",
                                      "GATEWAY_METRICS_TOKEN": METRICS_TOKEN, "GATEWAY_PATH_HOSTS": "127.0.0.1"})]
    try:
        wait_port(upstream_port)
        wait_port(gateway_port)
        direct_url = f"http://127.0.0.1:{upstream_port}/generate"
        via_url = f"http://127.0.0.1:{gateway_port}/bench/llm/generate"
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        measure(via_url, auth, args.clients, 2, args.processes)  # warm-up: pools, caches, JIT-free but still
        measure(direct_url, auth, args.clients, 1, args.processes)
        queries_before = gateway_queries(gateway_port)
        print(f"gateway bench: {args.clients} concurrent clients over {args.processes} processes, "
              f"{args.seconds:g} s per phase, protected endpoint (token checked, not forwarded)")
        results = {}
        for name, url in (("direct ", direct_url), ("gateway", via_url)):
            rps, latencies, errors = measure(url, auth, args.clients, args.seconds, args.processes)
            results[name] = (rps, sorted(latencies))
            print(f"  {name}: {rps:8.0f} req/s · {percentiles(latencies)} · errors {errors}")
        (d_rps, d_lat), (g_rps, g_lat) = results["direct "], results["gateway"]

        def p(ordered: list[float], q: float) -> float:
            return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

        print(f"  ratio  : throughput gateway/direct {g_rps / d_rps:.2f} · "
              f"p50 {p(g_lat, .5) / p(d_lat, .5):.2f}x (+{(p(g_lat, .5) - p(d_lat, .5)) * 1000:.2f} ms) · "
              f"p99 {p(g_lat, .99) / p(d_lat, .99):.2f}x (+{(p(g_lat, .99) - p(d_lat, .99)) * 1000:.2f} ms)")
        print(f"  SQL statements run by the gateway during the measured phase: "
              f"{gateway_queries(gateway_port) - queries_before:.0f}")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)


if __name__ == "__main__":
    main()
