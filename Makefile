# Belfry — the two commands are `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install run test lint format unit integration bench bench-intake bench-tick bench-stats migrate clean up down

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
## Debian packages the tests use, installed in one apt-get when any is missing:
## prometheus (promtool: /metrics text, rules, config), prometheus-alertmanager (alerting
## tests), chromium (the api dashboard test), nginx (the public-host routing test).
test: lint
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  echo "make test: installing$$missing (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing \
	  || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing); \
	fi
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

unit: install
	$(BIN)/python -m pytest -m "not integration"

integration: install
	$(BIN)/python -m pytest -m integration

## make bench: ingest vs a bare aiohttp app and the naive peer under wrk, then the metric
## intake bench, the alerting tick and the stats at scale; results in bench/results/
## (bench/README.md).
bench: install
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_intake.py
	$(BIN)/python scripts/bench_tick.py
	$(BIN)/python scripts/bench_stats.py

## make bench-intake: metric intake (OTLP, remote_write) into alerting, beside /v1/track
## hits and a bare aiohttp app, in one run.
bench-intake: install
	$(BIN)/python scripts/bench_intake.py

## make bench-tick: one alerting evaluation tick, 10,000 series x 100 rules.
bench-tick: install
	$(BIN)/python scripts/bench_tick.py

## make bench-stats: GET /{tenant}/stats for 10M events over 1M emails, with and without
## concurrent inserts.
bench-stats: install
	$(BIN)/python scripts/bench_stats.py

## make up / make down: everything in Docker Compose (infra/compose.yaml, docs/deploy.md).
COMPOSE := docker compose -f infra/compose.yaml
DOCKER_CHECK = docker compose version >/dev/null 2>&1 || { \
	  echo "make $@: needs Docker with the compose plugin ('docker compose version' failed); without Docker, 'make run' runs Belfry on this machine"; exit 1; }; \
	docker info >/dev/null 2>&1 || { \
	  echo "make $@: the Docker daemon is not reachable ('docker info' failed): start it, or use 'make run'"; exit 1; }

up:
	@$(DOCKER_CHECK)
	$(COMPOSE) up -d --build --wait
	@echo "Belfry is up: http://127.0.0.1:8000 (pixel/click/api), Grafana http://127.0.0.1:3000, Jaeger http://127.0.0.1:16686, RabbitMQ http://127.0.0.1:15672, Mailpit http://127.0.0.1:8025"

down:
	@$(DOCKER_CHECK)
	$(COMPOSE) down

migrate: install
	$(BIN)/python -m shared.db migrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
