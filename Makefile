# dspy-bridge — every task a developer or CI needs. `make run` and `make test` work from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.9
PROTO_OUT := clients/python/src/dspy_bridge_client/_proto
PROTO_FILES := $(wildcard proto/dspy_bridge/v1/*.proto)
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: install proto run serve test test-python test-node test-elixir test-elixir-if-present lint fmt bench clean redis-server
NPM ?= npm

install: $(VENV)/.installed $(PROTO_OUT)/.generated

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) sync --locked --quiet
	touch $@

# Generated code lives inside the client package (it is the one both the client and the server import).
proto: $(PROTO_OUT)/.generated
$(PROTO_OUT)/.generated: $(PROTO_FILES) proto/generate.py $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python proto/generate.py
	touch $@

run: install
	$(BIN)/python -m dspy_bridge.walkthrough

serve: install
	$(BIN)/dspy-bridge serve

lint: install
	cd proto && ../$(BIN)/buf lint
	$(BIN)/ruff check server clients/python tests bench
	$(BIN)/ruff format --check server clients/python tests bench
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix server clients/python tests bench
	$(BIN)/ruff format server clients/python tests bench

test: install lint test-python test-node test-elixir-if-present

test-python: install redis-server
	$(BIN)/pytest -q -p no:cacheprovider

# The shared-store tests run a real redis-server (Debian's package); CI is root on a fresh clone.
redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# Node/TypeScript client: compile, then `node --test` against a real sidecar run from .venv.
test-node: install
	cd clients/node && $(NPM) ci --no-audit --no-fund --loglevel=error \
	  && DSPY_BRIDGE_PYTHON=$(abspath $(BIN)/python) $(NPM) test

# Elixir client: ExUnit against a real sidecar run from .venv (started by test/test_helper.exs).
# Its hex dependencies (grpc, protobuf, mint) must already be in clients/elixir/deps
# (`mix deps.get`); `make test` runs the suite only when mix and they are present.
ELIXIR_DIR := clients/elixir
test-elixir: install
	cd $(ELIXIR_DIR) && mix test

test-elixir-if-present:
	@if ! command -v mix >/dev/null; then \
	  echo "Elixir client tests not run: mix is not installed"; \
	elif ! (cd $(ELIXIR_DIR) && ls -d deps/grpc deps/protobuf deps/mint >/dev/null 2>&1); then \
	  echo "Elixir client tests not run: its hex dependencies are not in $(ELIXIR_DIR)/deps (run mix deps.get there)"; \
	else $(MAKE) --no-print-directory test-elixir; fi

bench: install redis-server
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(PROTO_OUT) .mypy_cache .ruff_cache .pytest_cache clients/node/node_modules clients/node/dist \
	  clients/elixir/_build
