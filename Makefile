# Two commands on a fresh machine: `make run` (quick start) and `make test` (the test suite).
# Both create .venv when it is missing and install the package into it (pip install -e ".[dev]").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= 2.13.0
export FLWR_TELEMETRY_ENABLED = 0
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test install clean-venv

run: $(VENV)/.installed
	$(BIN)/fl-poison run --config experiments/quickstart.toml --overwrite

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

install: $(VENV)/.installed

# Re-installs when pyproject.toml changes. torch's CPU build goes in first: left to pyproject's range alone,
# pip would take a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_CPU)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

clean-venv:
	rm -rf $(VENV)
