# Two commands set everything up: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install the project into it when it is missing or pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test test-slow test-multinode lint demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision come from the package index (CUDA build; it runs on CPU too).
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# ruff, then the documentation site: --strict fails on a dead link or anchor, and the reference
# pages are generated from the code (docs/hooks/reference_pages.py). The site goes to build/site.
lint: venv
	$(BIN)/ruff check hgsearch tests cluster docs/hooks
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

test: venv lint
	$(BIN)/python -m pytest -q -m "not multinode and not slow" -n 2 --dist loadfile --durations=15

# Tests of minutes each (marked slow: training, real sweeps killed and resumed, the tiny
# benchmark runs); .ci/run runs them after make test.
test-slow: venv
	$(BIN)/python -m pytest -q -m slow -n 2 --dist loadfile --durations=10

# A Ray cluster of separate hosts in network namespaces (tests/cluster/test_multinode.py): as root,
# minutes long, so apart from `make test`; .ci/run runs both.
test-multinode: venv
	$(BIN)/python -m pytest -q -m multinode

# The demo sweep, then the knee of its front exported to results/demo/selected/ (model.pt,
# model.onnx, arch.json, model_card.json) and the report at results/demo/report/index.html.
demo: venv
	$(BIN)/hgsearch sweep
	$(BIN)/hgsearch select results/demo --rule knee
	$(BIN)/hgsearch report results/demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
