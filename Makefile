# Two commands on a fresh machine with Python 3.11 and make:  make run  ·  make test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install lint types unit histories bench clean

run: $(STAMP)        ## the whole product: Temporal dev server + UI, worker, API, SQLite
	$(BIN)/kwanus dev

test: $(STAMP) lint types unit   ## lint, types and every test

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

lint: $(STAMP)       ## style, and the layers (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

types: $(STAMP)
	$(BIN)/mypy

# Tests mostly wait on servers and timers: four processes in parallel on 2 cores, an idle one
# taking tests from a busy one's queue (worksteal: no file's long tests wait behind each other
# on one process while the others are idle; every test has its own database, task queue and
# time-skipping server, the dev server is one per process).
PYTEST_ARGS ?= -n 4 --dist worksteal --durations=25
unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The replay corpus (tests/histories/): every run the workflow tests make, exported from real
# servers (README, "Changing workflow code"). SQLite only: one history per branch is enough.
HISTORY_TESTS = tests/test_expansion_workflow.py tests/test_migration_workflow.py \
	tests/test_remediation_workflow.py tests/test_stewardship_workflow.py \
	tests/test_continue_as_new.py tests/test_api_stewardship.py tests/test_api_deprecation.py \
	tests/test_webhooks.py tests/test_read_your_writes.py tests/test_fanout_notice.py
histories: $(STAMP)
	KWANUS_EXPORT_HISTORIES=1 KWANUS_TEST_DATABASE_URL= $(BIN)/pytest -q $(HISTORY_TESTS)

bench: $(STAMP)      ## performance side by side with bare Temporal (bench/RESULTS.md)
	$(BIN)/python -m bench.perf $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
