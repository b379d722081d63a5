# CourseBridge: the two commands a newcomer needs are `make run` and `make test`.
# Both create their own environment on first use: a pinned uv in .tools/, the locked workspace in .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
RUN := $(UV) run --frozen

.PHONY: run test test-tools lint format samples bench backfill cli env clean

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

env: .venv/.synced

## Run the whole pipeline locally on the embedded backend (Ctrl-C stops everything).
run: env
	$(RUN) python tools/local_stack.py

## Send sample Hotmart webhooks to the running local stack.
samples: env
	$(RUN) python -m ingest.entrypoints.send_samples $(ARGS)

## Import historical Hotmart sales and subscriptions (docs/ingest/reconciliation.md):
##   make backfill ARGS="--from 2025-01-01 --to 2025-12-31 [--dry-run]"
backfill: env
	$(RUN) python tools/local_stack.py backfill $(ARGS)

## The operator CLI against the running stack (make run): make cli ARGS="why ana@example.com"
cli: env
	$(RUN) coursebridge $(ARGS)

## Every test: unit, contract (embedded and Google's emulators), service, end to end and deployment config.
## First installs what the tests need beyond Python into .tools/ (helm, kubeconform, the BigQuery emulator,
## the CRD validators; Chromium through apt): tools/install_test_tools.sh, cached after the first run.
test: env test-tools
	BQ_EMULATOR_BIN="$(CURDIR)/.tools/bin" $(RUN) pytest $(PYTEST_ARGS)

test-tools:
	bash tools/install_test_tools.sh

lint: env
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: env
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

## Benchmarks print figures; see docs/benchmarks.md.
bench: env
	$(RUN) python benchmarks/ingest_throughput.py $(ARGS)

clean:
	rm -rf .venv .tools .pytest_cache .ruff_cache
