# The project's commands. Only Python, the package registries and (on Debian) apt are
# assumed: scripts/system-deps installs the few system packages a build needs.
PYTHON ?= python3
UV_VERSION := 0.9.5
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck proto bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

install: $(UV)
	scripts/system-deps
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --all-packages --all-extras --python $(PYTHON) --compile-bytecode
	$(BIN)/python -m compileall -q gateway/src sandbox/src sdk/src tools/src >/dev/null

run: install
	$(BIN)/preservarium up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory typecheck

typecheck: install
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest

proto: install
	$(BIN)/python -m preservarium.protogen

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
