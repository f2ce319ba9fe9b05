# Two commands set everything up: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install the project into it when it is missing or pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test lint demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision come from the package index (CUDA build; it runs on CPU too).
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

lint: venv
	$(BIN)/ruff check hgsearch tests

test: venv lint
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/hgsearch sweep

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
