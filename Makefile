# CourseBridge: the two commands a newcomer needs are `make run` and `make test`.
# Both create their own environment on first use: a pinned uv in .tools/, the locked workspace in .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
RUN := $(UV) run --frozen

.PHONY: run test test-tools lint format samples bench backfill cli env clean fake-lms fake-lms-down fake-lms-up \
	replay sweep analytics-rebuild provision manifests catalogue

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

env: .venv/.synced

## Run the whole pipeline locally on the embedded backend (Ctrl-C stops everything).
## `exec`: the stack is make's own child, so it ends with make however make ends (see tools/local_stack.py).
run: env
	exec .venv/bin/python tools/local_stack.py run

## Send sample Hotmart webhooks to the running local stack.
samples: env
	$(RUN) python -m ingest.entrypoints.send_samples $(ARGS)

## Stop the running stack's TalentLMS fake and keep it down (watch CourseBridge retry), then bring it back.
fake-lms-down: env
	$(RUN) python tools/local_stack.py fake down
fake-lms-up: env
	$(RUN) python tools/local_stack.py fake up

## The TalentLMS fake alone, in the foreground (port: TALENTLMS_FAKE_PORT, default 8090).
fake-lms: env
	$(RUN) python -m talentlms_fake

## Operator commands; each takes its options in ARGS="...", against the backend the environment configures.
replay: env
	$(RUN) python -m enrollment.entrypoints.replay $(ARGS)
sweep: env
	$(RUN) python -m subscription.entrypoints.sweep $(ARGS)
analytics-rebuild: env
	$(RUN) python -m analytics.entrypoints.rebuild $(ARGS)
provision: env
	$(RUN) python -c "from coursebridge.tools import provision_main; provision_main()"

## Regenerate the deploy manifests and the event catalogue (CI fails when they are stale).
manifests: env
	$(RUN) python tools/deploy_manifests.py $(ARGS)
catalogue: env
	$(RUN) python tools/event_catalogue.py $(ARGS)

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

## Benchmarks print figures; see docs/benchmarks.md. BENCH=<name in benchmarks/> picks one.
BENCH ?= ingest_throughput
bench: env
	$(RUN) python benchmarks/$(BENCH).py $(ARGS)

clean:
	rm -rf .venv .tools .pytest_cache .ruff_cache
