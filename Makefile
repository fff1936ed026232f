# The README's commands: `make demo` and `make test`. Both set everything up on a fresh
# Debian machine (run as root): apt packages when missing, the .venv, pinned requirements.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := git curl ca-certificates python3-venv
COLLECTION_ROOT := .build/ansible_collections/codeferry/bitbucket
PYTEST_FLAGS ?=

.PHONY: help venv system-packages demo test test-emulator test-unit test-integration test-compat sanity lint bench clean

help:
	@echo "make demo   start the Bitbucket emulator and show a token + clone round trip"
	@echo "make test   set up and run every test suite"
	@echo "make bench  run the benchmarks"
	@echo "make venv   create .venv with the pinned Python requirements"

# apt only for what is missing, so repeated runs stay offline and fast.
system-packages:
	@missing=""; \
	command -v $(PYTHON) >/dev/null || missing="$$missing python3"; \
	command -v git >/dev/null || missing="$$missing git"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	test -e /usr/lib/git-core/git-http-backend || missing="$$missing git"; \
	test -e /etc/ssl/certs/ca-certificates.crt || missing="$$missing ca-certificates"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.stamp: requirements.txt constraints.txt tests/emulator/pyproject.toml | system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==25.3
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install -q --no-deps -e ./tests/emulator
	touch $@

venv: system-packages $(VENV)/.stamp

demo: venv
	$(BIN)/python tests/emulator/demo.py

test: venv test-emulator test-unit test-integration test-compat sanity lint

test-emulator: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/emulator/tests

test-unit: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/unit

test-integration: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/integration

# meta/runtime.yml promises ansible-core 2.17 to 2.19: the unit and integration suites also run
# on the newest 2.17 and 2.18, each in a venv of its own (.venv-core-<version>).
COMPAT_CORES := 2.17.14 2.18.19
COMPAT_PINS = $(shell grep -E '^(pytest|requests|pyyaml|werkzeug|trustme|cryptography)==' requirements.txt)

.venv-core-%/.stamp: requirements.txt tests/emulator/pyproject.toml | system-packages
	test -x .venv-core-$*/bin/python || $(PYTHON) -m venv .venv-core-$*
	.venv-core-$*/bin/python -m pip install -q ansible-core==$* $(COMPAT_PINS)
	.venv-core-$*/bin/python -m pip install -q --no-deps -e ./tests/emulator
	touch $@

test-compat: $(foreach core,$(COMPAT_CORES),.venv-core-$(core)/.stamp)
	set -e; for core in $(COMPAT_CORES); do \
	  echo "== ansible-core $$core"; .venv-core-$$core/bin/pytest $(PYTEST_FLAGS) tests/unit tests/integration; \
	done

# ansible-test needs the collection under ansible_collections/<namespace>/<name>.
$(COLLECTION_ROOT): FORCE
	rm -rf $(COLLECTION_ROOT) && mkdir -p $(COLLECTION_ROOT)
	git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t $(COLLECTION_ROOT)

# ansible-test installs pip into its per-test venvs with a bootstrap script it cannot download
# here; .ci/get_pip.py is a local stand-in, placed where ansible-test looks for a cached copy.
ANSIBLE_TEST_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py

$(ANSIBLE_TEST_PIP): .ci/get_pip.py
	mkdir -p $(dir $@) && cp $< $@

sanity: venv $(ANSIBLE_TEST_PIP) $(COLLECTION_ROOT)
	cd $(COLLECTION_ROOT) && git init -q && git add -A && \
	  PATH=$(CURDIR)/$(BIN):$$PATH ansible-test sanity --color no --python 3.11 --venv --requirements

lint: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint --profile production

bench: venv
	$(BIN)/python tests/bench/run.py

clean:
	rm -rf .build

FORCE:
