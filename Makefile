# tilld: the two commands a newcomer needs are `make demo` and `make test`.
# Both build their own virtual environment in .venv and install the Debian
# packages they need when they are missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint format bench system-deps clean

demo: $(STAMP)
	$(BIN)/tilld demo --state-dir .tilld-demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# One run writes the whole docs/benchmarks.md (about 10-15 minutes on 2 cores).
# The million-entry journal cold_start.py builds is reused by growth.py through
# BENCH_CACHE (about 1.2 GB), and removed at the end.
BENCH_DOC ?= docs/benchmarks.md
BENCH_CACHE ?= $(or $(TMPDIR),/tmp)/tilld-bench-cache-$(shell id -u)

bench: $(STAMP)
	$(BIN)/python tests/bench/sale_latency.py --write $(BENCH_DOC)
	$(BIN)/python tests/bench/outage_figures.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/scan_replay.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/cold_start.py --cache $(BENCH_CACHE) --append $(BENCH_DOC)
	$(BIN)/python tests/bench/scan_latency.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/socket_throughput.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/growth.py --cache $(BENCH_CACHE) --append $(BENCH_DOC)
	$(BIN)/python tests/bench/report.py finish $(BENCH_DOC)
	rm -rf $(BENCH_CACHE)

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Debian/Ubuntu packages: python3-venv for the virtual environment.
system-deps:
	@if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "installing python3-venv"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv python3-pip; \
	fi

clean:
	rm -rf $(VENV) .tilld-demo .pytest_cache .ruff_cache .hypothesis
