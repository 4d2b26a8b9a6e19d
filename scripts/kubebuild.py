"""Build the local cluster's binaries from pinned upstream Go modules, into ``.tools/kube/bin``.

    python -m scripts.kubebuild [--check]

Components (each from the Go module proxy, nothing from a download site):

- ``kube-apiserver``, ``kube-controller-manager``, ``kube-scheduler`` from ``k8s.io/kubernetes`` at
  ``KUBERNETES``. That module's go.mod replaces every ``k8s.io/*`` staging module with a local path that
  the published module does not contain, so the build runs in a small wrapper module that requires
  ``k8s.io/kubernetes`` and replaces each staging module with its published ``v0.X.Y``. The release ships
  its generated OpenAPI definitions (``pkg/generated/openapi``); the build refuses a pin that does not.
  The version ldflags are set so ``/version`` reports the pinned release, not a dev version.
- ``etcd`` from ``go.etcd.io/etcd/server/v3`` at ``ETCD`` (a two-line main calling ``etcdmain.Main``,
  which is all upstream's own main does).
- ``kwok`` from ``sigs.k8s.io/kwok`` at ``KWOK``: simulated nodes and pods, no container runtime; its
  release's node and pod stage files are copied beside it (``.tools/kube/kwok-stages``).

The result is stamped with the pins (``.tools/kube/STAMP``): a second run with the same pins and all
binaries present does nothing and takes milliseconds; a changed pin rebuilds. Each component prints one
progress line with the time it took. The Go build and module caches stay where ``go env`` puts them
(``GOCACHE``/``GOMODCACHE`` are honoured), so a rebuild on the same machine is warm. Builds run one at a
time, niced: on two cores two at once only thrash.

``--check`` exits 0 when the binaries are built for the current pins, 1 otherwise, and builds nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

KUBERNETES = "v1.37.2"
ETCD = "v3.6.16"
KWOK = "v0.8.0"

ROOT = Path(__file__).resolve().parent.parent
KUBE_DIR = Path(os.environ.get("KUBE_TOOLS_DIR", ROOT / ".tools" / "kube"))
BIN = KUBE_DIR / "bin"
STAMP = KUBE_DIR / "STAMP"
KWOK_STAGES = KUBE_DIR / "kwok-stages"  # KWOK's own node and pod stages, from the pinned module
KWOK_STAGE_FILES = ("node/fast/node-initialize.yaml", "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                    "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml")
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
ALL_BINARIES = (*KUBE_BINARIES, "etcd", "kwok")


class BuildError(RuntimeError):
    """A component failed to build: str() says which and the tail of the go command's output."""


def stamp_text() -> str:
    return f"kubernetes={KUBERNETES} etcd={ETCD} kwok={KWOK}\n"


def is_built() -> bool:
    """True when every binary exists and was built for the current pins."""
    try:
        current = STAMP.read_text() == stamp_text()
    except OSError:
        return False
    stages = all((KWOK_STAGES / Path(f).name).is_file() for f in KWOK_STAGE_FILES)
    return current and stages and all((BIN / name).is_file() for name in ALL_BINARIES)


def _go(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false", **(env or {})}
    proc = subprocess.run(["nice", "-n", "10", "go", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BuildError(f"go {' '.join(args[:2])} in {cwd} failed:\n{tail}")
    return proc.stdout


def _module_dir(module: str, version: str, cwd: Path) -> Path:
    out = _go(["mod", "download", "-json", f"{module}@{version}"], cwd)
    match = re.search(r'"Dir":\s*"([^"]+)"', out)
    if not match:
        raise BuildError(f"go mod download {module}@{version} gave no directory")
    return Path(match.group(1))


def _write_module(path: Path, name: str, requires: dict[str, str], replaces: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = [f"module {name}", "", "go 1.26.0", "", "require ("]
    lines += [f"\t{mod} {ver}" for mod, ver in requires.items()]
    lines.append(")")
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in replaces.items()]
        lines.append(")")
    (path / "go.mod").write_text("\n".join(lines) + "\n")


def _build_kubernetes(work: Path) -> None:
    src = work / "kubernetes"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text("module localcluster/kubernetes\n\ngo 1.26.0\n")
    k8s_dir = _module_dir("k8s.io/kubernetes", KUBERNETES, src)
    if not (k8s_dir / "pkg/generated/openapi/zz_generated.openapi.go").is_file():
        raise BuildError(f"k8s.io/kubernetes@{KUBERNETES} ships no pkg/generated/openapi; pin a release that does")
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", (k8s_dir / "go.mod").read_text(), re.M)
    staging_version = "v0." + KUBERNETES.removeprefix("v1.")
    _write_module(src, "localcluster/kubernetes", {"k8s.io/kubernetes": KUBERNETES},
                  {mod: staging_version for mod in staging})
    major, minor = KUBERNETES.removeprefix("v").split(".")[:2]
    build_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0))  # reproducible binaries
    x = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        x += [f"-X {pkg}.gitVersion={KUBERNETES}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
              f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate={build_date}"]
    ldflags = "-s -w " + " ".join(x)
    for name in KUBE_BINARIES:
        _timed(name, lambda name=name: _go(
            ["build", "-trimpath", "-ldflags", ldflags, "-o", str(BIN / name), f"k8s.io/kubernetes/cmd/{name}"],
            src))


def _build_etcd(work: Path) -> None:
    src = work / "etcd"
    _write_module(src, "localcluster/etcd", {"go.etcd.io/etcd/server/v3": ETCD}, {})
    (src / "main.go").write_text(
        "// The etcd server: upstream's main is this call.\npackage main\n\nimport (\n\t\"os\"\n\n"
        "\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n")
    _timed("etcd", lambda: _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(BIN / "etcd"), "."], src))


def _build_kwok(work: Path) -> None:
    src = work / "kwok"
    _write_module(src, "localcluster/kwok", {"sigs.k8s.io/kwok": KWOK}, {})
    ldflags = f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK}"
    _timed("kwok", lambda: _go(
        ["build", "-trimpath", "-ldflags", ldflags, "-o", str(BIN / "kwok"), "sigs.k8s.io/kwok/cmd/kwok"], src))
    # KWOK's binary has no stages built in (its kwokctl supplies them): take the release's own files.
    stage_dir = _module_dir("sigs.k8s.io/kwok", KWOK, src) / "kustomize/stage"
    KWOK_STAGES.mkdir(parents=True, exist_ok=True)
    for name in KWOK_STAGE_FILES:
        shutil.copyfile(stage_dir / name, KWOK_STAGES / Path(name).name)


def _timed(name: str, build) -> None:
    target = BIN / name
    print(f"kubebuild: {name}: building", flush=True)
    start = time.monotonic()
    build()
    size = target.stat().st_size / 2**20
    print(f"kubebuild: {name}: built in {time.monotonic() - start:.0f} s ({size:.0f} MiB)", flush=True)


def build() -> None:
    """Build every binary for the current pins unless they are built already (then a no-op)."""
    if is_built():
        return
    if shutil.which("go") is None:
        raise BuildError("the go command is not on PATH (Go 1.26 is needed to build the local cluster)")
    BIN.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    start = time.monotonic()
    print(f"kubebuild: building {stamp_text().strip()} into {BIN} (cold: about 10 minutes on 2 cores)",
          flush=True)
    work = KUBE_DIR / "src"
    _build_etcd(work)
    _build_kwok(work)
    _build_kubernetes(work)
    STAMP.write_text(stamp_text())
    print(f"kubebuild: done in {time.monotonic() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 0 if built for the current pins, else 1")
    args = parser.parse_args(argv)
    if args.check:
        return 0 if is_built() else 1
    try:
        build()
    except BuildError as exc:
        print(f"kubebuild: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
