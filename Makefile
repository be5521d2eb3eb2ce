# tilld: the two commands a newcomer needs are `make demo` and `make test`.
# Both build their own virtual environment in .venv and install the Debian
# packages they need when they are missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The demo's card terminal simulator: zvt or nexo (make demo DEMO_TERMINAL=nexo).
DEMO_TERMINAL ?= zvt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-long lint format bench bench-scale dbus-xml api-docs man system-deps clean install install-app install-files uninstall

demo: $(STAMP)
	$(BIN)/tilld demo --state-dir .tilld-demo --terminal $(DEMO_TERMINAL)

# The suite runs in TEST_WORKERS pytest-xdist processes, then the tests marked
# `serial` (a stop timed under CPU hogs: tests/conftest.py names them and says
# why) run alone, so no other test takes the cores they measure on. Most tests
# spend their time waiting on real daemons, simulators and timeouts, so four
# workers on two cores keep both cores busy (measured: 194 % CPU, 351 s,
# against 586 s with two workers). `--dist loadfile` keeps each test file on
# one worker: a module-scoped fixture (an installed venv, a shared daemon) is
# built once, and test_dbus_auth's tilld-cashier/tilld-tech groups in
# /etc/group are not deleted by one worker under another. (loadgroup's
# xdist_group marks do nothing with pytest 9.2 and xdist 3.8: xdist renames
# node ids through an attribute pytest 9 no longer reads.)
# `--no-loadscope-reorder` hands the files out in conftest's order, the
# longest first. `pytest -q` alone still runs everything in one process.
TEST_WORKERS ?= 4
# tilld's and the drivers' bytecode, compiled once before a run. A test run
# starts about 1,000 Python processes (daemons, simulators, tillctl); where
# PYTHONDONTWRITEBYTECODE is set (this machine sets it) none of them may
# write a .pyc, so each compiled every module from source again: 0.15 s of
# CPU in a daemon's 0.5 s start. compileall writes them all the same.
BYTECODE = $(BIN)/python -m compileall -q tilld drivers
PYTEST_PARALLEL = $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not serial"
PYTEST_SERIAL = $(BIN)/pytest -q -p no:xdist -m serial

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BYTECODE)
	$(PYTEST_PARALLEL)
	$(PYTEST_SERIAL)

# The fault suite at full strength: 800 SIGKILLs during sales and 200 while
# syncing (1,000 in all) and two minutes of mixed back-end faults. CI runs it
# after `make test`; `make test` runs the same tests smaller.
# The hardening tests run again here and write docs/reliability.md: each
# attack or fault they tried, with its figures, held or not held.
RELIABILITY_LOG ?= $(or $(TMPDIR),/tmp)/tilld-reliability-$(shell id -u).jsonl

# Its workers append to one RELIABILITY_LOG (tests/reliability.py: one
# O_APPEND write per line).
LONG_TESTS = tests/test_crash.py tests/test_chaos.py tests/test_hardening_*.py
LONG_ENV = TILLD_CRASH_KILLS=800 TILLD_SYNC_KILLS=200 TILLD_CHAOS_S=120 \
	TILLD_RELIABILITY_LOG=$(RELIABILITY_LOG)

test-long: $(STAMP)
	rm -f $(RELIABILITY_LOG)
	$(BYTECODE)
	$(LONG_ENV) $(PYTEST_PARALLEL) $(LONG_TESTS)
	$(LONG_ENV) $(PYTEST_SERIAL) $(LONG_TESTS)
	$(BIN)/python tests/reliability.py $(RELIABILITY_LOG) docs/reliability.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# One run writes the whole docs/benchmarks.md (about 20 minutes on 2 cores:
# slow_backend.py alone watches a slow back-end for ten minutes, the figure
# that shows a slow back-end is not taken for an outage). The scripts run one
# after another: run beside the others, that watch (a sale a second, two
# probes) made the scan figures' p99 a third worse (measured: ticket scans
# idle 1.31x-1.50x of their goal beside it, 0.97x without).
# The million-entry journal cold_start.py builds is reused by growth.py through
# BENCH_CACHE (about 0.35 GB), and removed at the end.
BENCH_DOC ?= docs/benchmarks.md
BENCH_CACHE ?= $(or $(TMPDIR),/tmp)/tilld-bench-cache-$(shell id -u)

bench: $(STAMP)
	$(BYTECODE)
	$(BIN)/python tests/bench/sale_latency.py --write $(BENCH_DOC)
	$(BIN)/python tests/bench/outage_figures.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/slow_backend.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/scan_replay.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/cold_start.py --cache $(BENCH_CACHE) --append $(BENCH_DOC)
	$(BIN)/python tests/bench/scan_latency.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/card_latency.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/socket_throughput.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/api_throughput.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/dbus_figures.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/start_ready.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/growth.py --cache $(BENCH_CACHE) --append $(BENCH_DOC)
	$(BIN)/python tests/bench/controlunit_sale.py --append $(BENCH_DOC)
	$(BIN)/python tests/bench/report.py finish $(BENCH_DOC)
	rm -rf $(BENCH_CACHE)

# Seven years on one till: a 10,000,000-entry journal (about 3.5 GB and a while
# to build), its disk use, start and sales. Not part of bench; appends its
# section to docs/benchmarks.md.
BENCH_SCALE_CACHE ?= $(or $(TMPDIR),/tmp)/tilld-bench-scale-$(shell id -u)

bench-scale: $(STAMP)
	$(BYTECODE)
	$(BIN)/python tests/bench/scale.py --cache $(BENCH_SCALE_CACHE) --append $(BENCH_DOC)
	rm -rf $(BENCH_SCALE_CACHE)

# docs/dbus/ from the running service's Introspect answer (tests/test_dbus.py checks it).
dbus-xml: $(STAMP)
	$(BIN)/python -m tilld.cli.dbus_xml docs/dbus

# docs/api.md's refusal reason table from tilld/errors.py (tests/test_docs.py checks it).
api-docs: $(STAMP)
	$(BIN)/python -m tilld.cli.api_docs docs/api.md

# man/ (tilld.8, tillctl.1) and completions/ (bash, zsh) from the argument
# parsers themselves (tests/test_tillctl_docs.py checks they are current);
# make install installs them from there, so installing needs no generator.
man: $(STAMP)
	$(BIN)/python -m tilld.cli.manpage man
	for prog in tilld tillctl; do \
		$(BIN)/python -m tilld.cli.completion $$prog bash > completions/$$prog.bash; \
		$(BIN)/python -m tilld.cli.completion $$prog zsh > completions/_$$prog; \
	done

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
	@# The D-Bus client tests: a GLib screen (tests/test_dbus_gio.py, Debian's
	@# python3 with PyGObject) and gdbus-codegen reading docs/dbus/*.xml.
	@if ! /usr/bin/python3 -c 'import gi' >/dev/null 2>&1 || ! command -v gdbus-codegen >/dev/null 2>&1; then \
		echo "installing python3-gi, gir1.2-glib-2.0 and libglib2.0-dev-bin"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-gi gir1.2-glib-2.0 libglib2.0-dev-bin libglib2.0-bin; \
	fi

clean:
	rm -rf $(VENV) .tilld-demo .pytest_cache .ruff_cache .hypothesis

# --- Installation on a till -------------------------------------------------
# `make install` (as root) puts tilld in its own virtual environment under
# /opt/tilld, built from Debian's /usr/bin/python3: Debian's Python is
# "externally managed" (PEP 668), so pip must not write into /usr, and a venv
# keeps tilld's pinned dependencies away from apt's. The units, sysusers,
# tmpfiles, udev rules and D-Bus policy go where systemd, udev and dbus look
# for packaged files. On Debian 12 /lib is a symlink to /usr/lib (merged
# /usr), so /usr/lib/systemd/system is /lib/systemd/system.
# DESTDIR stages into another root (packaging, tests); PREFIX moves bin/ and
# lib/ (PREFIX=/usr/local works for all but D-Bus, which reads only
# /usr/share and /etc). Every file written is listed in $(MANIFEST), and
# `make uninstall` removes exactly those: never /etc/tilld, never the journal.
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
DBUSPOLICYDIR ?= /usr/share/dbus-1/system.d
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
SYSCONFDIR ?= /etc
APPDIR ?= /opt/tilld
INSTALL_PYTHON ?= /usr/bin/python3
PIP_INSTALL_FLAGS ?=
MANIFEST := $(APPDIR)/share/installed-files
ROOT := $(DESTDIR)

# Stop a running till first (systemctl stop tilld): the environment is rebuilt in place.
install: install-app
	@$(MAKE) --no-print-directory install-files
	@echo "installed tilld in $(ROOT)$(APPDIR); next: docs/install.md (systemd-sysusers, systemd-tmpfiles --create, systemctl enable --now tilld)"

# The virtual environment with tilld and its dependencies.
install-app:
	@test -x $(INSTALL_PYTHON) || { echo "make install: $(INSTALL_PYTHON) is missing; apt-get install python3-venv, or set INSTALL_PYTHON" >&2; exit 1; }
	rm -rf $(ROOT)$(APPDIR)
	$(INSTALL_PYTHON) -m venv $(ROOT)$(APPDIR)
	$(ROOT)$(APPDIR)/bin/pip install --quiet --no-compile $(PIP_INSTALL_FLAGS) .
	@# A venv built under DESTDIR names DESTDIR in its scripts; it will run from APPDIR.
	if [ -n "$(DESTDIR)" ]; then \
		grep -rlIF -- "$(ROOT)$(APPDIR)" $(ROOT)$(APPDIR) | xargs -r sed -i "s|$(ROOT)$(APPDIR)|$(APPDIR)|g"; \
	fi
	$(ROOT)$(APPDIR)/bin/python -m compileall -q -s $(ROOT) -p / $(ROOT)$(APPDIR)/lib >/dev/null
	install -d $(ROOT)$(APPDIR)/share

# Everything else: commands on PATH, units, users, directories, rules, the
# example configuration (never over an existing one). Alone, it updates a
# till's units without rebuilding the environment.
install-files:
	@test -x $(ROOT)$(APPDIR)/bin/tilld || { echo "make install-files: no $(ROOT)$(APPDIR)/bin/tilld; run make install" >&2; exit 1; }
	install -d $(ROOT)$(APPDIR)/share
	install -m 0644 systemd/tilld.toml.example $(ROOT)$(APPDIR)/share/tilld.toml.example
	install -d $(ROOT)$(BINDIR)
	ln -sfn $(APPDIR)/bin/tilld $(ROOT)$(BINDIR)/tilld
	ln -sfn $(APPDIR)/bin/tillctl $(ROOT)$(BINDIR)/tillctl
	install -d $(ROOT)$(UNITDIR) $(ROOT)$(SYSUSERSDIR) $(ROOT)$(TMPFILESDIR)
	sed -e 's|/usr/bin/tilld|$(BINDIR)/tilld|' -e 's|/etc/tilld/|$(SYSCONFDIR)/tilld/|' \
		systemd/tilld.service > $(ROOT)$(UNITDIR)/tilld.service
	chmod 0644 $(ROOT)$(UNITDIR)/tilld.service
	install -m 0644 systemd/tilld.sysusers $(ROOT)$(SYSUSERSDIR)/tilld.conf
	install -m 0644 systemd/tilld.tmpfiles $(ROOT)$(TMPFILESDIR)/tilld.conf
	install -D -m 0644 man/tilld.8 $(ROOT)$(MANDIR)/man8/tilld.8
	install -D -m 0644 man/tillctl.1 $(ROOT)$(MANDIR)/man1/tillctl.1
	install -D -m 0644 completions/tilld.bash $(ROOT)$(BASHCOMPDIR)/tilld
	install -D -m 0644 completions/_tilld $(ROOT)$(ZSHCOMPDIR)/_tilld
	install -D -m 0644 completions/tillctl.bash $(ROOT)$(BASHCOMPDIR)/tillctl
	install -D -m 0644 completions/_tillctl $(ROOT)$(ZSHCOMPDIR)/_tillctl
	printf '%s\n' $(BINDIR)/tilld $(BINDIR)/tillctl $(UNITDIR)/tilld.service \
		$(SYSUSERSDIR)/tilld.conf $(TMPFILESDIR)/tilld.conf \
		$(MANDIR)/man8/tilld.8 $(MANDIR)/man1/tillctl.1 \
		$(BASHCOMPDIR)/tilld $(ZSHCOMPDIR)/_tilld \
		$(BASHCOMPDIR)/tillctl $(ZSHCOMPDIR)/_tillctl > $(ROOT)$(MANIFEST)
	@# Written on other branches: installed when they exist.
	if [ -f systemd/org.tilld.Till1.conf ]; then \
		install -D -m 0644 systemd/org.tilld.Till1.conf $(ROOT)$(DBUSPOLICYDIR)/org.tilld.Till1.conf; \
		echo $(DBUSPOLICYDIR)/org.tilld.Till1.conf >> $(ROOT)$(MANIFEST); \
	fi
	for rules in udev/*.rules; do \
		[ -f "$$rules" ] || continue; \
		install -D -m 0644 "$$rules" $(ROOT)$(UDEVRULESDIR)/$$(basename "$$rules"); \
		echo $(UDEVRULESDIR)/$$(basename "$$rules") >> $(ROOT)$(MANIFEST); \
	done
	install -d -m 0755 $(ROOT)$(SYSCONFDIR)/tilld
	if [ -e $(ROOT)$(SYSCONFDIR)/tilld/tilld.toml ]; then \
		echo "kept $(SYSCONFDIR)/tilld/tilld.toml (the new example is $(APPDIR)/share/tilld.toml.example)"; \
	else \
		install -m 0640 systemd/tilld.toml.example $(ROOT)$(SYSCONFDIR)/tilld/tilld.toml; \
	fi

uninstall:
	@test -f $(ROOT)$(MANIFEST) || { echo "make uninstall: no $(ROOT)$(MANIFEST); was tilld installed with this APPDIR and DESTDIR?" >&2; exit 1; }
	while read -r path; do rm -f "$(ROOT)$$path"; done < $(ROOT)$(MANIFEST)
	rm -rf $(ROOT)$(APPDIR)
	@echo "removed tilld. Kept on purpose: $(SYSCONFDIR)/tilld (configuration) and /var/lib/tilld"
	@echo "(the journal: sales not yet synced live there), and the tilld users and groups."
	@echo "Remove them by hand only once the back-end has every sale."
