# The two commands README.rst promises, each doing its own set-up on a fresh
# Debian machine:  `make run` (the demo: a virtual target, no hardware) and
# `make test` (the host test suite).  `make test-lab` runs the hardware suite
# against the real Linux USB gadget and V4L2 stack in QEMU.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-lab bench lint deps layouts clean

deps:
	scripts/install-debian-deps

# A compat-mode editable install: twistd finds the plugin in the working tree
# (a PEP 660 editable install would hide it).
$(STAMP): setup.cfg pyproject.toml
	$(MAKE) deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --config-settings editable_mode=compat -e '.[test]'
	touch $@

run: $(STAMP)
	@mkdir -p run
	@for f in keyboard mouse leds control; do [ -p run/$$f.fifo ] || mkfifo run/$$f.fifo; done
	@echo
	@echo "  tinypilotd demo: a virtual target computer behind FIFOs in ./run"
	@echo "  REST API:  https://localhost:8443/api/v1/"
	@echo "  CA:        run/state/tls/ca.crt  (also served at https://localhost:8443/ca.crt)"
	@echo "  Try:       TOKEN=\$$(curl -s --cacert run/state/tls/ca.crt -X POST https://localhost:8443/api/v1/auth | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])') && curl -s --cacert run/state/tls/ca.crt -H \"Authorization: Bearer \$$TOKEN\" -o screenshot.jpeg https://localhost:8443/api/v1/screenshot"
	@echo "  Stop:      Ctrl+C"
	@echo
	$(VENV)/bin/twistd --nodaemon --pidfile= tinypilot --config etc/tinypilot-demo.toml

test: $(STAMP)
	$(PY) -m pytest -q

test-lab: $(STAMP)
	lab/setup
	lab/run --timeout 540 -- $(abspath $(PY)) -m pytest -q -p no:cacheprovider tests/hw

lint: $(STAMP)
	$(PY) -m pip install -q ruff mypy mypy-zope
	$(VENV)/bin/ruff check tinypilotd bench tools twisted tests
	$(VENV)/bin/mypy tinypilotd

bench: $(STAMP)
	scripts/install-debian-deps wrk nginx
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# Regenerate the keyboard layout tables from xkeyboard-config.
layouts: $(STAMP)
	$(MAKE) deps
	$(PY) tools/gen_layouts.py

clean:
	rm -rf $(VENV) run build *.egg-info
