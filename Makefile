# The README's two commands: `make run` and `make test`. Both work on a fresh machine that has
# Python 3.11+, make and apt-get.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test test-slow lint typecheck system-deps clean

$(VENV)/.run-stamp: pyproject.toml
	bash scripts/make-venv.sh $(PYTHON) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server]'
	touch $@

$(VENV)/.test-stamp: pyproject.toml
	bash scripts/make-venv.sh $(PYTHON) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,test]'
	touch $@ $(VENV)/.run-stamp

system-deps:
	bash scripts/system-deps.sh

run: $(VENV)/.run-stamp
	$(BIN)/otaguard demo --keep-serving

test: $(VENV)/.test-stamp system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(VENV)/.test-stamp system-deps
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(VENV)/.test-stamp
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.test-stamp
	$(BIN)/mypy

clean:
	rm -rf $(VENV) otaguard-data .pytest_cache .mypy_cache .ruff_cache
