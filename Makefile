# Quant Genesis — the commands a new user needs. Everything runs from a fresh clone on Python 3.11.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
QG_HOME ?= $(CURDIR)/.qg
export QG_HOME
export MLFLOW_DISABLE_TELEMETRY := true
export DAGSTER_HOME := $(QG_HOME)/dagster

.PHONY: install install-test demo test lint up clean

# torch first, pinned to the CPU build, so pip never resolves plain `torch` to a CUDA download.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make demo — install, then run the main job on the embedded sample market
demo: install
	$(VENV)/bin/quant-genesis demo

## make test — install with test extras, make sure PostgreSQL is available, run the whole suite
test: install-test
	@scripts/ensure_postgres.sh
	$(VENV)/bin/ruff check quant_genesis_dagster realtime_sidecar benchmarks tests
	$(PY) -m pytest -n 2 --dist loadgroup

lint: install-test
	$(VENV)/bin/ruff check quant_genesis_dagster realtime_sidecar benchmarks tests
	$(VENV)/bin/ruff format --check quant_genesis_dagster realtime_sidecar benchmarks tests

## make up — Dagster UI (webserver + daemon) on 127.0.0.1:3000 and, for the embedded MLflow store,
## the MLflow UI on 127.0.0.1:5000 (stopped with the Dagster UI); a remote MLFLOW_TRACKING_URI is printed
up: install
	$(VENV)/bin/quant-genesis up

clean:
	rm -rf $(QG_HOME)
