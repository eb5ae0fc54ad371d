# Belfry — the two commands are `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install run test lint format unit integration bench migrate clean

# The virtualenv, rebuilt when pyproject.toml (the pinned dependencies) changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "make: cannot create a virtualenv: install Python 3.11+ with venv (Debian: apt-get install python3-venv)"; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

## make run: the whole system on this machine (RabbitMQ and Postgres must be installed).
run: install
	$(BIN)/python scripts/run.py

## make test: lint, then unit and integration tests against the real RabbitMQ and Postgres.
## promtool (Debian package `prometheus`) checks the /metrics text in the tests.
test: lint
	command -v promtool >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus))
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

## make bench: ingest vs a bare aiohttp app under wrk; results in bench/results/.
bench: install
	$(BIN)/python scripts/bench.py

migrate: install
	$(BIN)/python -m shared.db migrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
