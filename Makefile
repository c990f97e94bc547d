# multus-eni: `make demo` runs the whole flow in the local world; `make test` runs the suite.
# Both install what is missing first: Debian packages, the Python environment, Go-built binaries.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := etcd-server containernetworking-plugins iproute2
PYTHON ?= python3

.PHONY: demo test unit lint bench deps apt venv binaries clean

demo: deps
	$(VENV)/bin/multus-eni demo $(DEMO_ARGS)

test: deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Benchmarks print numbers and write bench/results/*.json (several minutes; docs/performance.md).
bench: deps
	$(PY) bench/scale.py --nodes 1000
	$(PY) bench/latency.py

unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

deps: apt venv binaries

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Re-created only when pyproject.toml changes.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

binaries:
	@scripts/build-binaries.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
