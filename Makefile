# The README's commands: `make demo` and `make test`. Both set everything up on a fresh
# Debian machine (run as root): apt packages when missing, the .venv, pinned requirements.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := git curl ca-certificates python3-venv
COLLECTION_ROOT := .build/ansible_collections/codeferry/bitbucket
PYTEST_FLAGS ?=

.PHONY: help venv system-packages demo test test-emulator test-unit test-property test-integration test-drill test-ee test-awx test-compat sanity lint changelog-lint changelog bench drill mutate clean

help:
	@echo "make demo   run the checkout role against the emulator onto three local hosts, cold then warm"
	@echo "make test   set up and run every test suite"
	@echo "make bench  run the benchmarks against two ansible.builtin baselines (bench/results.json)"
	@echo "make drill  run the fault drills, one line each"
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

test: venv test-emulator test-unit test-property test-integration test-drill test-ee test-awx test-compat sanity lint changelog-lint molecule

test-emulator: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/emulator/tests

test-unit: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/unit

# The integration suites spend most of their time in ansible-playbook processes: they run on every core
# (pytest-xdist; each worker starts its own emulators). TEST_JOBS=1 runs them one at a time.
TEST_JOBS ?= $(shell nproc)

test-integration: venv
	$(BIN)/pytest $(PYTEST_FLAGS) -n $(TEST_JOBS) tests/integration

# Generated bad input (hypothesis) against every module and filter, in-process and against the emulator.
test-property: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/property

# The fault drills, as tests; `make drill` runs the same drills and prints one line each.
test-drill: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/drills

drill: venv
	$(BIN)/python tests/drills/run.py

# The execution environment (extensions/ee, meta/execution-environment.yml): ansible-builder create and
# introspect, offline. Building the image needs a registry; docs/awx.md gives the command.
test-ee: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/ee

# The collection as AWX/AAP runs it: ansible-runner jobs (private data dirs laid out as AWX lays them out,
# the credential type's injected environment) against the emulator.
test-awx: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/awx

# meta/runtime.yml requires ansible-core >=2.17.0,<2.20. The main venv has 2.19; the unit and
# integration suites also run on the newest 2.17 and 2.18, each in a venv of its own (.venv-core-<version>).
COMPAT_CORES := 2.17.14 2.18.19
COMPAT_PINS = $(shell grep -E '^(pytest|pytest-xdist|requests|pyyaml|werkzeug|trustme|cryptography)==' requirements.txt) \
  $(shell grep -E '^execnet==' constraints.txt)

.venv-core-%/.stamp: requirements.txt tests/emulator/pyproject.toml | system-packages
	test -x .venv-core-$*/bin/python || $(PYTHON) -m venv .venv-core-$*
	.venv-core-$*/bin/python -m pip install -q ansible-core==$* $(COMPAT_PINS)
	.venv-core-$*/bin/python -m pip install -q --no-deps -e ./tests/emulator
	touch $@

test-compat: $(foreach core,$(COMPAT_CORES),.venv-core-$(core)/.stamp)
	set -e; for core in $(COMPAT_CORES); do \
	  echo "== ansible-core $$core"; .venv-core-$$core/bin/pytest $(PYTEST_FLAGS) -n $(TEST_JOBS) tests/unit tests/integration; \
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

# CHANGELOG.md from changelogs/fragments: `release` adds new fragments and plugins to the entry of
# galaxy.yml's version, creating it the first time. Its two warnings on later runs ("release ... already
# exists", "no release_summary") only mean that the entry exists and no new fragment has a summary.
changelog-lint: venv
	$(BIN)/antsibull-changelog lint

changelog: venv
	$(BIN)/antsibull-changelog lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/antsibull-changelog release --refresh --reload-plugins
	$(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

bench: venv
	$(BIN)/python bench/run.py

# Mutation testing over the unit tests; not part of `make test` (too slow for CI). mutmut names
# mutants after file paths, so it runs in a snapshot of the working tree laid out as
# ansible_collections/codeferry/bitbucket: the names then match what the tests import, and the
# checkout is never rewritten. Files to mutate: MUTATE_PATHS, files or directories, checkout-relative.
MUTATE_PATHS ?= plugins/module_utils
MUTATE_JOBS ?= $(shell nproc)
MUTATE_DIR := .build/mutate
MUTATE_TREE := ansible_collections/codeferry/bitbucket
MUTMUT := $(CURDIR)/$(BIN)/mutmut
# The diff of every survivor from one process: `mutmut show ID` takes half a second each.
export MUTATE_DIFFS := import sys; from mutmut.mutation.diff_apply import get_diff_for_mutant as diff; \
  print(''.join('\# %s\n%s\n\n' % (name, diff(name)) for name in sys.argv[1:]), end='')

mutate: venv
	rm -rf $(MUTATE_DIR) && mkdir -p $(MUTATE_DIR)/$(MUTATE_TREE)
	git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C $(MUTATE_DIR)/$(MUTATE_TREE)
	{ cat setup.cfg; echo 'only_mutate ='; for path in $(MUTATE_PATHS); do path=$${path%/}; \
	    case $$path in *.py) echo "    $(MUTATE_TREE)/$$path";; *) echo "    $(MUTATE_TREE)/$$path/*";; esac; \
	  done; } > $(MUTATE_DIR)/setup.cfg
	cd $(MUTATE_DIR) && $(MUTMUT) run --max-children $(MUTATE_JOBS)
	@cd $(MUTATE_DIR) && $(MUTMUT) results --all true | sed 's/^ *//' > results.txt && \
	  survivors=$$(sed -n 's/: survived$$//p' results.txt); \
	  echo; echo "== survivors: each passed every unit test"; \
	  $(CURDIR)/$(BIN)/python -c "$$MUTATE_DIFFS" $$survivors; \
	  echo "== functions no unit test calls (mutant count)"; \
	  sed -n 's/__mutmut_[0-9]*: no tests$$//p' results.txt | uniq -c; \
	  echo "== mutants by status"; sed 's/.*: //' results.txt | sort | uniq -c; \
	  echo "survivors: $$(echo $$survivors | wc -w)   show one again: cd $(MUTATE_DIR) && $(MUTMUT) show ID"

# The checkout role's molecule scenarios (extensions/molecule/, docs/molecule.md): three podman
# hosts per scenario, from a Debian 12 image built here once with debootstrap (no registry needed).
# MOLECULE_IMAGE=other/image uses another image and builds nothing; MOLECULE_SCENARIO=name runs one.
MOLECULE_IMAGE ?= localhost/codeferry-molecule-debian:12
MOLECULE_SCENARIO ?=
MOLECULE_COLLECTIONS := .build/molecule-collections
MOLECULE_ENV := CONTAINERS_CONF=$(CURDIR)/extensions/molecule/containers.conf MOLECULE_IMAGE=$(MOLECULE_IMAGE)

.PHONY: molecule-image molecule

molecule-image:
	@missing=""; for tool in podman runc debootstrap; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@case "$(MOLECULE_IMAGE)" in \
	  localhost/codeferry-molecule-*) $(MOLECULE_ENV) extensions/molecule/build-image.sh $(MOLECULE_IMAGE);; \
	  *) echo "MOLECULE_IMAGE=$(MOLECULE_IMAGE): using it as it is";; \
	esac

# molecule runs from the checkout (it finds galaxy.yml and extensions/molecule); Ansible finds the
# collection through a collections path that links this checkout, as the integration tests do.
molecule: venv molecule-image
	rm -rf $(MOLECULE_COLLECTIONS) && mkdir -p $(MOLECULE_COLLECTIONS)/ansible_collections/codeferry
	ln -s $(CURDIR) $(MOLECULE_COLLECTIONS)/ansible_collections/codeferry/bitbucket
	$(MOLECULE_ENV) ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/$(MOLECULE_COLLECTIONS) PATH=$(CURDIR)/$(BIN):$$PATH \
	  $(BIN)/molecule test $(if $(MOLECULE_SCENARIO),--scenario-name $(MOLECULE_SCENARIO),--all)

clean:
	rm -rf .build

FORCE:
