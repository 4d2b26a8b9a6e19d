"""A real Kubernetes control plane on loopback, with simulated nodes: etcd, kube-apiserver (TLS, RBAC,
service-account issuer, audit log), kube-controller-manager, kube-scheduler and KWOK.

Contract of ``LocalCluster(data_dir)``:

- ``up()`` is idempotent: a running cluster is left alone (a second ``up`` takes milliseconds); otherwise
  the binaries are built if needed (``scripts.kubebuild``), certificates made once, each component started
  in its own session (it outlives the caller, ``down`` stops it) and the call returns once the API server
  is ready, the default ServiceAccount exists and every simulated node is Ready. Ports are chosen free on
  the first ``up`` and kept in ``state.json``, so the kubeconfig stays valid across restarts.
- ``down()`` stops exactly the processes ``up`` recorded (a pid is signalled only if it still runs the
  binary recorded for it) and keeps the data; ``up`` again resumes with every object in place.
- Layout of ``data_dir``: ``kubeconfig`` (admin, system:masters), ``pki/``, ``etcd/``, ``logs/<component>.log``,
  ``audit.log`` (every request by a non-system caller, Metadata level), ``state.json``.

Simulated nodes advertise CPU, memory and ``nvidia.com/gpu`` and carry the instance-type label the
instance catalog selects on, so CPU and GPU endpoints schedule. Pods on them go Running without a
container runtime; images under ``simulated.invalid/pull-error/`` fail to pull and under
``simulated.invalid/crash-loop/`` crash-loop (``failure-stages.yaml``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scripts import kubebuild

from .pki import ensure_pki

HERE = Path(__file__).resolve().parent
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})  # as the audit log names them
INSTANCE_LABEL = "inference.controlplane.dev/instance-type"
SIMULATED_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"


@dataclass(frozen=True)
class NodePool:
    """``count`` identical simulated nodes."""

    prefix: str
    count: int
    instance_type: str
    cpu: str
    memory: str
    gpus: int = 0


def default_pools(cpu_nodes: int = 2) -> tuple[NodePool, ...]:
    """Two CPU nodes (Sapphire Rapids) and one node each of the cheapest GPU types, 4 GPUs apiece."""
    return (NodePool("sim-cpu", cpu_nodes, "intel-spr", "64", "256Gi"),
            NodePool("sim-gpu-t4", 1, "nvidia-t4", "48", "192Gi", gpus=4),
            NodePool("sim-gpu-l4", 1, "nvidia-l4", "48", "192Gi", gpus=4))


class ClusterError(RuntimeError):
    """The cluster could not start: str() names the component and the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _executable(pid: int) -> str | None:
    """The file process ``pid`` runs, or None when there is no such process (or it is a zombie)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


class LocalCluster:
    def __init__(self, data_dir: Path | str, *, pools: tuple[NodePool, ...] | None = None):
        self.dir = Path(data_dir).resolve()
        self.pools = pools if pools is not None else default_pools()
        self.pki = self.dir / "pki"
        self.logs = self.dir / "logs"
        self.kubeconfig = self.dir / "kubeconfig"
        self.audit_log = self.dir / "audit.log"
        self.state_path = self.dir / "state.json"

    # ------------------------------------------------------------ state
    def _state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)

    @property
    def ports(self) -> dict[str, int]:
        return self._state().get("ports", {})

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def _alive(self, name: str, state: dict) -> bool:
        entry = state.get("pids", {}).get(name)
        return bool(entry) and _executable(entry["pid"]) == entry["binary"]

    def components(self) -> dict[str, bool]:
        """Each component's name and whether its process runs."""
        state = self._state()
        return {name: self._alive(name, state) for name in COMPONENTS}

    def running(self) -> bool:
        """Every component runs and the API server answers ready."""
        state = self._state()
        return all(self._alive(n, state) for n in COMPONENTS) and self._ready()

    # ------------------------------------------------------------ HTTP to the API server (admin cert)
    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30,
                content_type: str = "application/json") -> dict:
        """One call as the cluster admin; raises urllib.error.HTTPError on a non-2xx answer. The timeout is
        generous: just after a restart the API server is ready but can take seconds to fill its watch caches."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(req, context=self._ssl(), timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw and raw[:1] in b"{[" else {"text": raw.decode(errors="replace")}

    # ------------------------------------------------------------ the API server's audit log
    def audit_mark(self) -> int:
        """A position in the audit log: ``audited(user, since=mark)`` reads only what came after it."""
        try:
            return self.audit_log.stat().st_size
        except FileNotFoundError:
            return 0

    def audited(self, user: str, since: int = 0) -> list[dict]:
        """Every request ``user`` made after offset ``since``, as the API server audited it (its
        ResponseComplete events; the log is written asynchronously, so allow a moment after a request)."""
        try:
            with open(self.audit_log, "rb") as f:
                f.seek(since)
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:  # a line the API server is still writing
                continue
            if event.get("stage") == "ResponseComplete" and event.get("user", {}).get("username") == user:
                events.append(event)
        return events

    def _ready(self) -> bool:
        try:
            return self.request("GET", "/readyz", timeout=2).get("text") == "ok"
        except (OSError, urllib.error.URLError, ssl.SSLError, KeyError):
            return False

    def version(self) -> str:
        return self.request("GET", "/version")["gitVersion"]

    # ------------------------------------------------------------ up / down
    def up(self, *, quiet: bool = False) -> float:
        """Start whatever is not running and wait until the cluster is usable; returns the seconds taken."""
        start = time.monotonic()
        say = (lambda *_: None) if quiet else (lambda msg: print(f"localcluster: {msg}", flush=True))
        if self.running():
            return time.monotonic() - start
        kubebuild.build()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        ensure_pki(self.pki)
        state = self._state()
        ports = state.setdefault("ports", {})
        for name in ("etcd", "etcd_peer", "apiserver"):
            if name not in ports:
                ports[name] = free_port()
        state.setdefault("pids", {})
        self._save(state)
        self._write_kubeconfigs(ports["apiserver"])
        for name in COMPONENTS:
            if self._alive(name, state):
                continue
            if name == "kwok":
                self._release_node_leases()
            state["pids"][name] = self._start(name, ports)
            self._save(state)
            if name == "etcd":
                self._wait(lambda: self._etcd_healthy(ports["etcd"]), "etcd", 30)
            elif name == "kube-apiserver":
                self._wait(self._ready, "kube-apiserver", 60)
                say(f"API server ready on {self.server} ({time.monotonic() - start:.1f} s)")
        self._ensure_nodes()
        self._wait(self._nodes_ready, "kwok", 60, what="every simulated node Ready")
        self._wait(self._default_service_account, "kube-controller-manager", 60,
                   what="the default ServiceAccount")
        elapsed = time.monotonic() - start
        say(f"cluster up in {elapsed:.1f} s: {self.version()}, {sum(p.count for p in self.pools)} simulated "
            f"nodes; kubectl --kubeconfig {self.kubeconfig} get nodes")
        return elapsed

    def down(self) -> list[str]:
        """Stop the processes ``up`` started (newest first); returns the names stopped."""
        state = self._state()
        stopped = []
        for name in reversed(COMPONENTS):
            if not self._alive(name, state):
                continue
            self._terminate(name, state)
            stopped.append(name)
        for name in list(state.get("pids", {})):
            if not self._alive(name, state):
                state["pids"].pop(name)
        if state:
            self._save(state)
        return stopped

    def stop(self, name: str) -> None:
        """Stop one component (for fault tests); ``up`` starts it again."""
        state = self._state()
        if self._alive(name, state):
            self._terminate(name, state)

    def _terminate(self, name: str, state: dict) -> None:
        """SIGTERM, then SIGKILL after 15 s; returns once the process is gone. (An API server whose etcd is
        down can spend a minute draining requests; one still draining would answer ``up``'s readiness check
        and then vanish.)"""
        pid = state["pids"][name]["pid"]
        os.kill(pid, signal.SIGTERM)
        if not self._gone(name, state, 15):
            os.kill(pid, signal.SIGKILL)
            self._gone(name, state, 15)

    def _gone(self, name: str, state: dict, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the component's process to exit; whether it did."""
        deadline = time.monotonic() + timeout
        while self._alive(name, state) and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._alive(name, state)

    def destroy(self) -> None:
        """``down``, then remove every file of the cluster."""
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ components
    def _args(self, name: str, ports: dict[str, int]) -> list[str]:
        pki, kubeconfigs = self.pki, self.dir / "kubeconfigs"
        if name == "etcd":
            peer = f"http://127.0.0.1:{ports['etcd_peer']}"
            client = f"http://127.0.0.1:{ports['etcd']}"
            # No fsync: this is a disposable development cluster, and fsync dominates etcd's latency on
            # shared disks.
            return ["--name", "local", "--data-dir", str(self.dir / "etcd"), "--listen-client-urls", client,
                    "--advertise-client-urls", client, "--listen-peer-urls", peer,
                    "--initial-advertise-peer-urls", peer, "--initial-cluster", f"local={peer}",
                    "--log-level", "warn", "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 2**30)]
        if name == "kube-apiserver":
            return ["--etcd-servers", f"http://127.0.0.1:{ports['etcd']}",
                    "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
                    "--secure-port", str(ports["apiserver"]),
                    "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
                    "--client-ca-file", str(pki / "ca.crt"),
                    "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
                    "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
                    "--authorization-mode", "Node,RBAC",
                    "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                    "--service-account-key-file", str(pki / "service-account.pub"),
                    "--service-account-signing-key-file", str(pki / "service-account.key"),
                    "--service-cluster-ip-range", SERVICE_CIDR,
                    # Loopback only: no real advertise address for the kubernetes Service's endpoints.
                    "--endpoint-reconciler-type", "none",
                    "--allow-privileged=true", "--profiling=false",
                    # New nodes would get a not-ready taint that only the node lifecycle controller (which
                    # we do not run: see the controller manager) removes.
                    "--disable-admission-plugins", "TaintNodesByCondition",
                    "--audit-policy-file", str(HERE / "audit-policy.yaml"), "--audit-log-path", str(self.audit_log),
                    "--audit-log-maxsize", "200", "--audit-log-maxbackup", "1", "--audit-log-format", "json",
                    "--v", "1"]
        if name == "kube-controller-manager":
            kubeconfig = str(kubeconfigs / "controller-manager")
            return ["--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
                    "--authorization-kubeconfig", kubeconfig, "--bind-address", "127.0.0.1", "--secure-port", "0",
                    "--leader-elect=false", "--use-service-account-credentials=true",
                    "--service-account-private-key-file", str(pki / "service-account.key"),
                    "--root-ca-file", str(pki / "ca.crt"),
                    "--cluster-signing-cert-file", str(pki / "ca.crt"),
                    "--cluster-signing-key-file", str(pki / "ca.key"),
                    # No node lifecycle controller: a simulated node never fails for real, but one whose lease
                    # lapsed while the API server was down would have its pods marked not Ready, and KWOK
                    # (unlike a kubelet) never marks them Ready again. Pod CIDRs are KWOK's (--cidr).
                    "--controllers", "*,-nodeipam,-nodelifecycle",
                    "--horizontal-pod-autoscaler-sync-period", "5s",
                    # The client defaults (20 requests/s) make the controllers, not the control plane under
                    # test, the bottleneck of a thousand-endpoint bench.
                    "--kube-api-qps", "200", "--kube-api-burst", "400", "--v", "1"]
        if name == "kube-scheduler":
            kubeconfig = str(kubeconfigs / "scheduler")
            return ["--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
                    "--authorization-kubeconfig", kubeconfig, "--bind-address", "127.0.0.1", "--secure-port", "0",
                    "--leader-elect=false", "--kube-api-qps", "200", "--kube-api-burst", "400", "--v", "1"]
        if name == "kwok":
            stages = sorted(str(p) for p in kubebuild.KWOK_STAGES.glob("*.yaml"))
            return ["--kubeconfig", str(kubeconfigs / "kwok"), "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector", f"{SIMULATED_ANNOTATION}=fake",
                    "--node-lease-duration-seconds", "40", "--cidr", POD_CIDR, "--node-ip", "10.0.0.1",
                    "--config", ",".join([*stages, str(HERE / "failure-stages.yaml")])]
        raise KeyError(name)

    def _start(self, name: str, ports: dict[str, int]) -> dict:
        binary = os.path.realpath(kubebuild.BIN / name)  # what /proc/<pid>/exe will say (_alive compares)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen([binary, *self._args(name, ports)], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir)
        finally:
            log.close()
        return {"pid": proc.pid, "binary": binary}

    def _log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait(self, predicate, component: str, timeout: float, what: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if component in COMPONENTS and not self._alive(component, self._state()):
                raise ClusterError(f"{component} exited; the end of {self.logs / component}.log:\n"
                                   f"{self._log_tail(component)}")
            time.sleep(0.1)
        raise ClusterError(f"timed out waiting for {what or component}; the end of {component}.log:\n"
                           f"{self._log_tail(component)}")

    @staticmethod
    def _etcd_healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                return json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    # ------------------------------------------------------------ kubeconfigs
    def _write_kubeconfigs(self, port: int) -> None:
        directory = self.dir / "kubeconfigs"
        directory.mkdir(exist_ok=True)
        for stem, path in (("admin", self.kubeconfig), ("controller-manager", directory / "controller-manager"),
                           ("scheduler", directory / "scheduler"), ("kwok", directory / "kwok")):
            path.write_text(kubeconfig_text(server=f"https://127.0.0.1:{port}", ca=self.pki / "ca.crt",
                                            cert=self.pki / f"{stem}.crt", key=self.pki / f"{stem}.key"))
            path.chmod(0o600)

    # ------------------------------------------------------------ nodes
    def node_objects(self) -> list[dict]:
        nodes = []
        for pool in self.pools:
            for index in range(pool.count):
                capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": "250", "ephemeral-storage": "1Ti"}
                taints = []
                if pool.gpus:
                    capacity["nvidia.com/gpu"] = str(pool.gpus)
                    taints = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
                nodes.append({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": f"{pool.prefix}-{index}",
                                 "annotations": {SIMULATED_ANNOTATION: "fake",
                                                 "node.alpha.kubernetes.io/ttl": "0"},
                                 "labels": {"type": "kwok", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                            "kubernetes.io/hostname": f"{pool.prefix}-{index}",
                                            INSTANCE_LABEL: pool.instance_type}},
                    "spec": {"taints": taints},
                    "status": {"capacity": capacity, "allocatable": capacity,
                               "nodeInfo": {"kubeletVersion": "simulated", "architecture": "amd64",
                                            "operatingSystem": "linux"}},
                })
        return nodes

    def _ensure_nodes(self) -> None:
        existing = {n["metadata"]["name"] for n in self.request("GET", "/api/v1/nodes").get("items", [])}
        for node in self.node_objects():
            if node["metadata"]["name"] not in existing:
                self.request("POST", "/api/v1/nodes", node)

    def _release_node_leases(self) -> None:
        """Delete the node leases a previous KWOK held: a new one has a new identity and would wait for them
        to expire (40 s) before it manages the nodes again."""
        for node in self.node_objects():
            try:
                self.request("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
                                       f"{node['metadata']['name']}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise

    def _nodes_ready(self) -> bool:
        wanted = {n["metadata"]["name"] for n in self.node_objects()}
        try:
            items = self.request("GET", "/api/v1/nodes").get("items", [])
        except (OSError, urllib.error.URLError):
            return False
        ready = {n["metadata"]["name"] for n in items
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions") or [])}
        return wanted <= ready

    def _default_service_account(self) -> bool:
        try:
            self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return True
        except (OSError, urllib.error.URLError):
            return False


def kubeconfig_text(*, server: str, ca: Path, cert: Path | None = None, key: Path | None = None,
                    token: str | None = None, name: str = "localcluster") -> str:
    """A kubeconfig with the data embedded (so it can be registered as a cluster and copied anywhere)."""
    import base64

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    user = {"token": token} if token else {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": name,
              "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
              "users": [{"name": name, "user": user}],
              "contexts": [{"name": name, "context": {"cluster": name, "user": name}}]}
    return json.dumps(config, indent=1) + "\n"
