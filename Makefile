# Newcomer commands: `make run` (the control plane on http://127.0.0.1:8000) and `make test` (the suite).
# Both set up .venv on first use and start an embedded Postgres/Redis when none is reachable.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WITH_SERVICES := $(PY) -m scripts.devservices --

.PHONY: install cluster cluster-down kube-build run manage test bench bench-smoke lint clean-data clean

install: $(VENV)/.installed
	@bash scripts/install_tools.sh

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

# The local Kubernetes cluster (etcd, API server, controller manager, scheduler, simulated nodes), built
# from pinned upstream sources into .tools/kube on first use (about 8 minutes on 2 cores, then cached).
kube-build: install
	@$(PY) -m scripts.kubebuild

cluster: install
	@$(PY) -m scripts.localcluster up

cluster-down:
	@$(PY) -m scripts.localcluster down

# Development paths turn DJANGO_DEBUG on (it defaults to off, the production-safe setting).
run: install
	@DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(WITH_SERVICES) $(PY) -m scripts.run

manage: install
	@DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(WITH_SERVICES) $(PY) manage.py $(ARGS)

test: install
	@DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(WITH_SERVICES) $(PY) -m pytest $(PYTEST_ARGS)

# Every benchmark prints its figures beside the yardstick they are compared with, from the same run; smoke
# mode runs each on tiny sizes (the suite does too: tests/test_benches.py), so none rots.
BENCHES := admission reconcile gateway cluster console
bench: install
	@for b in $(BENCHES); do echo "== bench/$$b.py"; DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(WITH_SERVICES) $(PY) bench/$$b.py $(BENCH_ARGS) || exit 1; done

bench-smoke:
	@$(MAKE) --no-print-directory bench BENCH_ARGS=--smoke

lint: install
	$(VENV)/bin/ruff check .

clean-data:
	rm -rf .data

clean: clean-data
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .hypothesis
