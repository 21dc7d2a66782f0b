# wazuhcluster developer targets. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TRIAL_ARGS ?= tests

.PHONY: help venv test unit integration lint typecheck demo bench clean smoke

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

venv: $(STAMP) ## create or refresh the virtualenv with the project and its test tools

test: $(STAMP) ## run the whole trial suite (unit and integration)
	$(BIN)/python -b -m twisted.trial --reporter=text $(TRIAL_ARGS)

unit: $(STAMP) ## run the unit tests only
	$(BIN)/python -b -m twisted.trial $$(cd tests && ls -d test_*.py | sed 's/^/tests./; s/\.py$$//')

integration: $(STAMP) ## run the real-process tests only
	$(BIN)/python -b -m twisted.trial tests.integration

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: lint

demo: $(STAMP) ## run a local master and two workers with agents (Ctrl-C stops them)
	$(BIN)/python -m wazuhcluster.demo --dir demo

bench: $(STAMP) ## run the benchmarks in bench/ and print their figures
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean: ## remove caches, build output and dropin.cache files
	find . -name dropin.cache -not -path './$(VENV)/*' -delete
	rm -rf _trial_temp* build dist *.egg-info .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

smoke: $(STAMP) ## build the wheel, install it in a fresh venv, check twistd and the scripts from elsewhere
	rm -rf dist build /tmp/wazuhcluster-smoke
	$(BIN)/pip wheel -q --no-deps -w dist .
	$(PYTHON) -m venv /tmp/wazuhcluster-smoke
	/tmp/wazuhcluster-smoke/bin/pip install -q dist/wazuhcluster-*.whl
	cd / && /tmp/wazuhcluster-smoke/bin/twistd --help | grep -q wazuhcluster
	cd / && /tmp/wazuhcluster-smoke/bin/twistd wazuhcluster --help | grep -q -- --role
	cd / && for s in wazuh-cluster-control wazuh-cluster-certs wazuh-logtest wazuh-agent-sim; do \
		/tmp/wazuhcluster-smoke/bin/$$s --help | grep -q -- --home || { echo "$$s lacks --home"; exit 1; }; done
	@echo "smoke test passed"
