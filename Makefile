# Newcomer commands: `make run` (the control plane on http://127.0.0.1:8000) and `make test` (the suite).
# Both set up .venv on first use and start an embedded Postgres/Redis when none is reachable.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WITH_SERVICES := $(PY) -m scripts.devservices --

.PHONY: install run test lint clean-data clean

install: $(VENV)/.installed
	@bash scripts/install_tools.sh

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

run: install
	@$(WITH_SERVICES) $(PY) -m scripts.run

test: install
	@$(WITH_SERVICES) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean-data:
	rm -rf .data

clean: clean-data
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache .hypothesis
