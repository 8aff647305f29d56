# WeRSS Cascade. `make up` runs the system; `make test` installs what it needs and tests it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up demo test bench install clean compose-test lint typecheck format

$(STAMP): requirements.lock requirements-test.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

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

## docker-compose.yml for real (root; minutes): installs docker.io and docker-compose if
## missing, starts a private dockerd if none runs, builds the image, drives parent + child.
compose-test: $(STAMP)
	WERSS_COMPOSE_TEST=1 $(BIN)/python -m pytest tests/deploy -p no:cacheprovider $(PYTEST_ARGS)

## ruff: pycodestyle, pyflakes and bugbear findings (the rules and why: pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .

## mypy on shared/, parent/ and child/ (not clean yet, so not run by .ci/run).
typecheck: $(STAMP)
	$(BIN)/mypy

## ruff format, for the files named (the codebase has not been reformatted as a whole).
format: $(STAMP)
	@test -n "$(FILES)" || { echo "name the files: make format FILES='path ...'" >&2; exit 2; }
	$(BIN)/ruff format $(FILES)

bench: $(STAMP)
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && \
	  $$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y wrk >/dev/null; } || \
	  echo "bench: wrk not installed; the http section falls back to Python clients"
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .mypy_cache build *.egg-info
