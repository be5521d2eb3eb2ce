# tilld: the two commands a newcomer needs are `make demo` and `make test`.
# Both build their own virtual environment in .venv and install the Debian
# packages they need when they are missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-long lint format bench dbus-xml system-deps clean

demo: $(STAMP)
	$(BIN)/tilld demo --state-dir .tilld-demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

# The fault suite at full strength: 800 SIGKILLs during sales and 200 while
# syncing (1,000 in all) and two minutes of mixed back-end faults. CI runs it
# after `make test`; `make test` runs the same tests smaller.
test-long: $(STAMP)
	TILLD_CRASH_KILLS=800 TILLD_SYNC_KILLS=200 TILLD_CHAOS_S=120 \
		$(BIN)/pytest -q tests/test_crash.py tests/test_chaos.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python tests/bench/sale_latency.py --write docs/benchmarks.md
	$(BIN)/python tests/bench/outage_figures.py --append docs/benchmarks.md
	$(BIN)/python tests/bench/api_throughput.py --append docs/benchmarks.md

# docs/dbus/ from the running service's Introspect answer (tests/test_dbus.py checks it).
dbus-xml: $(STAMP)
	$(BIN)/python -m tilld.cli.dbus_xml docs/dbus

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Debian/Ubuntu packages: python3-venv for the virtual environment; dbus
# (dbus-daemon, dbus-send) for the demo's private bus and the D-Bus tests.
system-deps:
	@if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "installing python3-venv"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv python3-pip; \
	fi
	@if ! command -v dbus-daemon >/dev/null 2>&1 || ! command -v dbus-send >/dev/null 2>&1; then \
		echo "installing dbus"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dbus; \
	fi

clean:
	rm -rf $(VENV) .tilld-demo .pytest_cache .ruff_cache .hypothesis
