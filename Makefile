# hubfleet: `make demo` runs the example fleet on the local backend; `make test` installs and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CHP := node_modules/.bin/configurable-http-proxy

.PHONY: install demo test bench docs lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[local,kubernetes,test]'
	touch $@

$(CHP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(CHP)

demo: install
	$(VENV)/bin/hubfleet up examples/university

test: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q

bench: install
	$(PY) benchmarks/plan_scale.py
	$(PY) benchmarks/local_fleet.py
	$(PY) benchmarks/enrol_sync.py
	$(PY) benchmarks/archive.py
	$(PY) benchmarks/render_scale.py

docs: install
	$(VENV)/bin/hubfleet docs --out docs/catalog.md

clean:
	rm -rf $(VENV) node_modules .hubfleet
