# The two commands: `make demo` and `make test`. Both bootstrap what they need.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Debian tools that tests talk to as real peers: openssl (s_time), net-snmp's
# snmpwalk/snmpget (SNMP agent tests), tinyproxy (proxy tests), headless Chromium and
# its WebDriver (the web pages' browser tests).
DEB_TOOLS := openssl snmpwalk:snmp tinyproxy:tinyproxy chromium:chromium chromedriver:chromium-driver

.PHONY: demo test lint bench clean venv debs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Install Debian tools only when one is missing (needs root, as on these machines).
# Each entry is command:package (a bare name is both).
debs:
	@missing=""; for t in $(DEB_TOOLS); do cmd=$${t%%:*}; pkg=$${t##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: $(STAMP)
	$(BIN)/python -m emulator demo

test: $(STAMP) debs
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check device_direct emulator tests bench
	$(BIN)/mypy

# The benches also count instructions with valgrind (bench/fleet_instructions.py).
bench: $(STAMP) debs
	@$(MAKE) --no-print-directory debs DEB_TOOLS="valgrind callgrind_annotate:valgrind"
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
