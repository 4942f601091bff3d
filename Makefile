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

# The suite runs on TEST_WORKERS pytest-xdist workers (a module stays on one worker; most
# tests wait on sockets and brokers, so more workers than cores pays), then the tests
# marked `serial` (latency bounds) run alone. Bytecode is cached for the run: this
# machine's PYTHONDONTWRITEBYTECODE would make every worker rewrite every test module.
# `make lint` runs in full, with mypy beside the parallel part: without its cache (a fresh
# clone) it takes half a minute of one core, which that part leaves idle.
TEST_WORKERS ?= 4
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

SERIAL_MODULES = $(shell grep -rl --include='test_*.py' 'pytest.mark.serial' tests)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@echo "$(BIN)/mypy (beside the parallel tests; its output follows them)"
	@log=$$(mktemp) || exit 1; \
	$(BIN)/mypy >"$$log" 2>&1 & typecheck=$$!; \
	trap 'kill $$typecheck 2>/dev/null; rm -f "$$log"' EXIT; trap 'exit 130' INT TERM; \
	echo '$(PYTEST) -n $(TEST_WORKERS) --dist loadgroup -m "not serial"'; \
	$(PYTEST) -n $(TEST_WORKERS) --dist loadgroup -m "not serial"; tests=$$?; \
	wait $$typecheck; typed=$$?; echo "$(BIN)/mypy:"; cat "$$log"; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]
	$(PYTEST) -m serial $(SERIAL_MODULES) || [ $$? -eq 5 ]

proto: install
	$(BIN)/python -m preservarium.protogen

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
