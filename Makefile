# Two commands: `make demo` (set up, then run a full migration against the cluster twin)
# and `make test` (set up, then lint, type-check and run the whole test suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STRATEGY ?= node-pool

.PHONY: setup debian-packages lint typecheck test test-fast demo rehearse twin bench clean

$(STAMP): requirements.txt requirements-dev.txt requirements-deploy.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

debian-packages:
	bash scripts/install-debian-packages.sh

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy plugins/cilium_migration twin localrun

test: lint typecheck debian-packages
	$(VENV)/bin/pytest

test-fast: setup
	$(VENV)/bin/pytest -m "not e2e"

# `make demo STRATEGY=in-place`: the in-place strategy's DAG (Cilium beside aws-node on the same nodes)
demo: setup
	$(PY) -m localrun.demo --strategy $(STRATEGY) $(DEMO_ARGS)

# the full migration against a twin of a scenario `python -m twin.capture` took from your cluster
rehearse: setup
	@test -n "$(SCENARIO)" || { echo "usage: make rehearse SCENARIO=captured.yaml" >&2; exit 2; }
	$(PY) -m localrun.demo --strategy $(STRATEGY) --scenario $(SCENARIO) $(DEMO_ARGS)

twin: setup
	$(PY) -m twin --kubeconfig run/kubeconfig --env-file run/twin.env

bench: setup
	PYTHONPATH=.:plugins $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf run .pytest_cache .mypy_cache .ruff_cache
