"""Gateway overhead against two yardsticks measured in the same run: the stub upstream called directly, and
nginx (Debian's ``nginx-light``, one worker, keep-alive upstream) in front of the same stub.

Run: ``make install && .venv/bin/python bench/gateway.py [--clients 64] [--seconds 5] [--rounds 3]
[--processes 2] [--workers 1,2]``

Starts the stub upstream (an aiohttp app answering a small JSON body), nginx and the gateway as processes
of their own, registers a cluster whose Services all resolve to the stub, and deploys a *protected*
endpoint, so every request through the gateway is routed, token-checked and proxied (the warm path:
memory only), with its Prometheus metrics and traffic counters (flushed to Redis) on, as in production.
nginx only proxies (no token check: it has no way to). One gateway is started per ``--workers`` value
(``GATEWAY_WORKERS``: event-loop processes sharing the port), each measured as a target of its own.

Each round measures, one after the other, direct / nginx / gateway at one client (one keep-alive
connection, back to back: the latency a request pays) and at ``clients`` clients spread over
``processes`` load processes (the throughput). All three get the same clients from the same load
processes. The figures are the median of the rounds' figures; every round's gateway/nginx ratios are
printed too, so a noisy round shows. Each target's CPU time per request (nginx's, the gateway's with
all its workers, the stub's for direct) is read from /proc around each phase: unlike req/s it hardly
depends on what else runs on the machine. The machine is shared by the load processes, the stub, nginx and
the gateway (its core count is printed): compare the ratios, not the absolute figures across machines.

nginx: the full run installs ``nginx-light`` with apt-get when no ``nginx`` is on the PATH (and fails if
it cannot); ``--smoke`` uses it only when it is already installed, and says so when it skips it.
"""

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, bench_args, setup_django  # noqa: E402

BODY = b'{"generated_text": "hello"}'
METRICS_TOKEN = "bench-metrics-token"  # the gateway serves its metrics only for a token

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000;
  upstream stub {{ server 127.0.0.1:{upstream}; keepalive 256; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=2048;
    location / {{
      proxy_pass http://stub;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"""


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


def find_nginx(install: bool) -> str | None:
    """The nginx binary; with ``install``, ``apt-get install nginx-light`` first when there is none."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found or not install:
        return found
    print("nginx not found: installing nginx-light with apt-get", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT,
             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], **quiet)
    return shutil.which("nginx") or (("/usr/sbin/nginx") if os.access("/usr/sbin/nginx", os.X_OK) else None)


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
    processes = min(processes, clients)
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live descendants (a gateway's workers), from /proc."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return total
    return total + sum(cpu_seconds(child) for child in children)


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def gateway_metric(port: int, name: str) -> float:
    """The sum of every sample of ``name`` on the gateway's metrics page."""
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/_gateway/metrics",
                                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    text = urllib.request.urlopen(request, timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="GATEWAY_WORKERS of each gateway to measure, comma separated")
    parser.add_argument("--compare-with", metavar="CHECKOUT",
                        help="also measure the gateway (1 worker) of another checkout, e.g. main: before/after in one run")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = bench_args(parser, clients=4, seconds=0.3, rounds=1, processes=1, workers="1")
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    nginx = find_nginx(install=not args.smoke)
    if nginx is None and not args.smoke:
        raise SystemExit("nginx-light could not be installed: the full run needs it as its yardstick")
    env = setup_django()
    from controlplane.services import token_create, user_create
    from deployments import feed
    from deployments.services import cluster_register
    from endpoints import services
    from endpoints.models import Endpoint
    from tests.factories import endpoint_spec

    upstream_port, nginx_port = free_port(), free_port()
    worker_counts = [int(n) for n in args.workers.split(",")]
    # name -> (GATEWAY_WORKERS, port, checkout it runs from)
    gateway_ports = {f"gateway/{n}" if len(worker_counts) > 1 else "gateway": (n, free_port(), REPO)
                     for n in worker_counts}
    if args.compare_with:
        gateway_ports = {"before/1": (1, free_port(), Path(args.compare_with).resolve()), **gateway_ports}
    cluster_register(name="bench", vendor="aws", region="us-east-1", in_cluster=True, ingress_domain="bench.test",
                     service_url_template=f"http://127.0.0.1:{upstream_port}")
    user = user_create(username="bench")
    _, token = token_create(user=user, name="bench")
    endpoint = services.endpoint_create(account=user.personal_account, spec=endpoint_spec("llm", type="protected"),
                                        actor=user)
    Endpoint.objects.filter(pk=endpoint.pk).update(state="running")
    feed.route_publish(account_slug="bench", name="llm")

    scratch = tempfile.TemporaryDirectory(prefix="bench-nginx-")
    children = [subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(upstream_port)], cwd=REPO, env=env)]
    pids = {"direct": children[0].pid}  # whose CPU each target costs (direct: the stub's)
    for name, (workers, port, checkout) in gateway_ports.items():
        children.append(subprocess.Popen([sys.executable, "-m", "gateway"], cwd=checkout, env={
            **env, "GATEWAY_BIND": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING", "GATEWAY_METRICS_TOKEN": METRICS_TOKEN,
            "GATEWAY_PATH_HOSTS": "127.0.0.1", "GATEWAY_WORKERS": str(workers)}))
        pids[name] = children[-1].pid
    targets = {"direct": f"http://127.0.0.1:{upstream_port}/generate"}
    if nginx:
        conf = Path(scratch.name) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=scratch.name, upstream=upstream_port, port=nginx_port))
        children.append(subprocess.Popen([nginx, "-c", str(conf), "-p", scratch.name], cwd=scratch.name))
        pids["nginx"] = children[-1].pid
        targets["nginx"] = f"http://127.0.0.1:{nginx_port}/generate"
    for name, (_, port, _) in gateway_ports.items():
        targets[name] = f"http://127.0.0.1:{port}/bench/llm/generate"
    try:
        wait_port(upstream_port)
        for _, port, _ in gateway_ports.values():
            wait_port(port)
        if nginx:
            wait_port(nginx_port)
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        warm = 0.3 if args.smoke else 2
        for url in targets.values():  # warm-up: pools, caches, the stub's and nginx's keep-alive connections
            measure(url, auth, args.clients, warm, args.processes)
        queries_before = {name: gateway_metric(port, "gateway_db_queries_total")
                          for name, (_, port, _) in gateway_ports.items()}
        answered_before = {name: gateway_metric(port, "gateway_requests_total")
                           for name, (_, port, _) in gateway_ports.items()}
        print(f"gateway bench on {os.cpu_count()} cores: {args.rounds} round(s) of {args.seconds:g} s per phase, "
              f"1 client and {args.clients} clients over {args.processes} load processes; protected endpoint "
              f"(token checked, not forwarded), metrics and traffic counters on; GATEWAY_WORKERS: {args.workers}")
        print(f"  nginx: {nginx_version(nginx)} (one worker, keep-alive upstream)" if nginx else
              "  nginx: not installed, skipped (--smoke does not install it; the full run does)")
        levels = (1, args.clients)
        # (target, clients) -> per round: (req/s, p50, p99, CPU seconds of the target's own process per request)
        figures: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
        total_errors = 0
        for round_no in range(args.rounds):
            for clients in levels:
                for name, url in targets.items():
                    cpu_before = cpu_seconds(pids[name])
                    rps, latencies, errors = measure(url, auth, clients, args.seconds, args.processes)
                    cpu = (cpu_seconds(pids[name]) - cpu_before) / max(len(latencies), 1)
                    total_errors += errors
                    ordered = sorted(latencies)
                    figures.setdefault((name, clients), []).append(
                        (rps, quantile(ordered, .5), quantile(ordered, .99), cpu))
            if nginx and args.rounds > 1:
                parts = []
                for name in gateway_ports:
                    for clients in levels:
                        g, n = figures[name, clients][-1], figures["nginx", clients][-1]
                        parts.append(f"{name} {clients}c: {g[0] / n[0]:.2f}x, p50 +{(g[1] - n[1]) * 1000:.2f} ms")
                print(f"  round {round_no + 1} vs nginx: " + " · ".join(parts), flush=True)

        def med(name: str, clients: int) -> tuple[float, float, float, float]:
            rows = figures[name, clients]
            return tuple(statistics.median(row[i] for row in rows) for i in range(4))

        for clients in levels:
            print(f"  {clients} client(s), median of {args.rounds}:")
            for name in targets:
                rps, p50, p99, cpu = med(name, clients)
                whose = "the stub's" if name == "direct" else "its own"
                print(f"    {name:10s}: {rps:8.0f} req/s · p50 {p50 * 1000:6.2f} ms · p99 {p99 * 1000:6.2f} ms · "
                      f"{cpu * 1e6:4.0f} us CPU per request ({whose})")
            for name in gateway_ports:
                g, d = med(name, clients), med("direct", clients)
                line = (f"    {name:10s}: {g[0] / d[0]:.2f}x direct's req/s, p50 +{(g[1] - d[1]) * 1000:.2f} ms, "
                        f"p99 +{(g[2] - d[2]) * 1000:.2f} ms over direct")
                if nginx:
                    n = med("nginx", clients)
                    line += (f" · {g[0] / n[0]:.2f}x nginx's req/s, p50 +{(g[1] - n[1]) * 1000:.2f} ms, "
                             f"p99 +{(g[2] - n[2]) * 1000:.2f} ms over nginx")
                print(line)
        print(f"  errors: {total_errors}")
        for name, (_, port, _) in gateway_ports.items():
            answered = gateway_metric(port, "gateway_requests_total") - answered_before[name]
            sent = sum(rps * args.seconds for (target, _), rows in figures.items() if target == name for rps, *_ in rows)
            print(f"  {name}: SQL statements run while measured: "
                  f"{gateway_metric(port, 'gateway_db_queries_total') - queries_before[name]:.0f} · requests its "
                  f"metrics counted: {answered:.0f} of {sent:.0f} sent")
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)
        scratch.cleanup()
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)


def nginx_version(nginx: str) -> str:
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


if __name__ == "__main__":
    main()
