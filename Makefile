# Two commands on a fresh machine: `make demo` and `make test`.
# Both create or reuse .venv; CPU torch is installed first where no GPU is present.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medray-installed
TORCH_CPU := torch==2.13.0
DEMO_DIR ?= demo-out

.PHONY: demo test venv lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "no GPU: installing the CPU build of torch"; \
		$(BIN)/python -m pip install -q $(TORCH_CPU); \
	fi
	@$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	@$(BIN)/python -m medray demo --out $(DEMO_DIR)

test: $(STAMP)
	@$(BIN)/python -m pytest tests -q --timeout=900 -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; exit $$rc

lint: $(STAMP)
	@$(BIN)/ruff check medray tests jobs

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
