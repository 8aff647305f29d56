# WeRSS Cascade. `make up` runs the system; `make test` installs what it needs and tests it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up demo test test-fast cov bench install lock clean compose-test lint typecheck format

# requirements-test.lock holds everything (runtime, test, lint), pinned and hashed;
# requirements.lock the runtime alone (the image installs that).
$(STAMP): requirements.lock requirements-test.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

PIP_TOOLS := pip-tools==7.6.2
LOCK_FLAGS := --quiet --generate-hashes --no-emit-index-url --no-emit-find-links \
  $(if $(UPGRADE),--upgrade)

## Regenerate both hashed locks from pyproject.toml, after adding or changing a dependency
## there. Pins already in the locks are kept where pyproject.toml allows them; UPGRADE=1
## moves every pin to the newest version allowed. Then `make install`. The test lock keeps
## extras (`coverage[toml]==...`): pip 23 in --require-hashes mode resolves a dependency's
## extra (pytest-cov's coverage[toml]) to the newest release instead of the stripped pin.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip show pip-tools >/dev/null 2>&1 || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) --strip-extras \
	  --output-file requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) \
	  --no-strip-extras --extra test --extra lint --constraint requirements.lock \
	  --output-file requirements-test.lock pyproject.toml

## The whole system on the embedded default (SQLite under data/), parent on 127.0.0.1:8001.
up: $(STAMP)
	@mkdir -p data
	WERSS_DATABASE_URL=$${WERSS_DATABASE_URL:-sqlite:///data/parent.db} \
	  $(BIN)/werss-parent init
	@bash deploy/make-up.sh

## A first task flowing through `make up`: local RSS feed -> child -> webhook -> parent.
demo: $(STAMP)
	$(BIN)/python deploy/demo.py

## The test suite on SQLite; also on PostgreSQL when WERSS_TEST_DATABASE_URL is set.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || echo "NOTE: Chromium not found: the console's browser tests (tests/browser) are SKIPPED. Install it with 'bash deploy/install-chromium.sh' (as root)."
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The inner loop: everything but the end-to-end, browser and deploy tests (seconds, not
## minutes; in-process Flask app, real SQLite, and PostgreSQL when WERSS_TEST_DATABASE_URL is set).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not browser and not deploy" $(PYTEST_ARGS)

## test-fast with line coverage of parent/, child/ and shared/: a table in the terminal and
## an HTML report in htmlcov/ (the end-to-end tests run code in other processes, not counted).
cov: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not browser and not deploy" \
	  --cov --cov-report=term --cov-report=html $(PYTEST_ARGS)

## docker-compose.yml for real (root; minutes): installs docker.io and docker-compose if
## missing, starts a private dockerd if none runs, builds the image, drives parent + child.
compose-test: $(STAMP)
	WERSS_COMPOSE_TEST=1 $(BIN)/python -m pytest tests/deploy -p no:cacheprovider $(PYTEST_ARGS)

## ruff: pycodestyle, pyflakes and bugbear findings (the rules and why: pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .

## mypy on shared/, parent/ and child/; clean, and run by .ci/run.
typecheck: $(STAMP)
	$(BIN)/mypy

## ruff format, for the files named (the codebase has not been reformatted as a whole).
format: $(STAMP)
	@test -n "$(FILES)" || { echo "name the files: make format FILES='path ...'" >&2; exit 2; }
	$(BIN)/ruff format $(FILES)

## Every section on SQLite, then the scale sections on PostgreSQL (4 workers, as issue 14
## sets the claim goal), then issue 14's goals from both runs. BENCH_PG_URL= skips PostgreSQL.
BENCH_PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
BENCH_PG_ARGS ?= --workers 4 --sections http,leasing,queue,fleet
bench: $(STAMP)
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && \
	  $$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y wrk >/dev/null; } || \
	  echo "bench: wrk not installed; the http section falls back to Python clients"
	@status=0; since=$$(date -u +%Y%m%dT%H%M%SZ); \
	$(BIN)/python -m bench $(BENCH_ARGS) || status=$$?; \
	if [ -n "$(BENCH_PG_URL)" ]; then \
	  $(BIN)/python -m bench --pg "$(BENCH_PG_URL)" $(BENCH_PG_ARGS) $(BENCH_ARGS) || status=$$?; \
	fi; \
	$(BIN)/python -m bench.goals --since $$since || status=$$?; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .mypy_cache build *.egg-info \
	  .coverage htmlcov
