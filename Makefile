# Every target does its own set-up: a venv in .venv, the project installed into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PROTO_DIR := protos
PROTOS := $(shell find $(PROTO_DIR) -name '*.proto' | sort)
PY_OUT := clients/python
PY_GEN := $(PY_OUT)/errorreplay/v1
PYTEST_ARGS ?=

.PHONY: venv gen gen-ts check-gen lint test run demo bench bench-quick clean

venv: $(STAMP)

# The client (clients/python, errorreplay-client) first: the server depends on it by name.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e clients/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Lint the protos, then generate the Python messages, stubs and .pyi type stubs.
gen: $(STAMP)
	$(BIN)/buf lint
	rm -f $(PY_GEN)/*_pb2*.py $(PY_GEN)/*_pb2*.pyi
	$(PY) -m grpc_tools.protoc -I $(PROTO_DIR) \
	  --python_out=$(PY_OUT) --grpc_python_out=$(PY_OUT) \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=$(PY_OUT) \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=$(PY_OUT) \
	  $(PROTOS)
	$(MAKE) -s gen-ts

# The TypeScript client is generated when its npm tools are installed (clients/typescript).
gen-ts:
	@if [ -x clients/typescript/node_modules/.bin/buf ] || [ -f clients/typescript/package.json ]; then \
	  if command -v npm >/dev/null; then $(MAKE) -C clients/typescript gen; fi; \
	fi

# Regenerate and fail if anything changed; check breaking changes against main.
check-gen: gen
	@if git rev-parse -q --verify main >/dev/null && git cat-file -e main:buf.yaml 2>/dev/null; then \
	  $(BIN)/buf breaking --against '.git#branch=main'; fi
	@changes=$$(git status --porcelain -- $(PY_GEN) clients/typescript/src/gen); \
	if [ -n "$$changes" ]; then echo "generated code is stale; run make gen and commit:"; echo "$$changes"; exit 1; fi

lint: $(STAMP)
	$(BIN)/buf lint
	$(BIN)/ruff check server clients/python tests bench
	$(BIN)/ruff format --check server clients/python tests bench
	$(BIN)/mypy
	$(BIN)/mypy --strict clients/python/errorreplay clients/python/examples

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/errorreplay serve

# Seeds a realistic cascade into the server at ERRORREPLAY_ADDRESS (default localhost:50051; start
# it with `make run` in another terminal) and prints its replay.
demo: $(STAMP)
	$(BIN)/errorreplay demo

bench: $(STAMP)
	$(PY) -m bench.run

bench-quick: $(STAMP)
	$(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
