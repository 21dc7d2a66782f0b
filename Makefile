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

.PHONY: help venv system-deps test unit integration lint typecheck demo bench clean smoke

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=compat
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

venv: $(STAMP) ## create or refresh the virtualenv with the project and its test tools

system-deps: ## (root) install the system tools some integration tests drive: nginx, logrotate, etcd
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		need=""; \
		command -v nginx >/dev/null || need="$$need nginx-light libnginx-mod-stream"; \
		command -v logrotate >/dev/null || need="$$need logrotate"; \
		command -v etcd >/dev/null || need="$$need etcd-server"; \
		if [ -n "$$need" ]; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null 2>&1; \
			  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need >/dev/null 2>&1; } || \
			echo "system-deps: could not install$$need; the tests that need them say so"; \
		fi; \
	fi

test: $(STAMP) ## run the whole trial suite (unit and integration)
	$(BIN)/python -b -m twisted.trial --reporter=text $(TRIAL_ARGS)

unit: $(STAMP) ## run the unit tests only
	$(BIN)/python -b -m twisted.trial $$(cd tests && ls -d test_*.py | sed 's/^/tests./; s/\.py$$//')

integration: $(STAMP) ## run the real-process tests only
	$(BIN)/python -b -m twisted.trial tests.integration

lint: $(STAMP) ## ruff (lint and format), mypy, and the import floors (import-linter, setup.cfg)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

typecheck: lint

# e.g. make demo RULESET=/path/to/wazuh-4.14.7.tar.gz (or a source tree): Wazuh's full ruleset;
# make demo FAILOVER=1: etcd, two master candidates, two workers, kill -9 of the master
RULESET ?=

demo: $(STAMP) ## run a local master and two workers with agents (Ctrl-C stops them)
	$(BIN)/python -m wazuhcluster.scripts.$(if $(FAILOVER),demo_failover,demo) --dir demo $(if $(RULESET),--ruleset '$(RULESET)')

# The 'bench' extra (matplotlib, py-spy), installed once beside the editable install by every
# bench target, so each works on a fresh clone.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) setup.cfg
	$(BIN)/pip install -q -e '.[dev,bench]' --config-settings editable_mode=compat
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## run the quick benchmarks (minutes); bench-cluster and bench/README.md for the long ones
	@for b in bench_integrity bench_analysis bench_enrollment bench_enrollment_worker; do \
		echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

clean: ## remove caches, build output and dropin.cache files
	find . -name dropin.cache -not -path './$(VENV)/*' -delete
	rm -rf _trial_temp* build dist *.egg-info .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

smoke: $(STAMP) ## build the wheel, install it in a fresh venv, check twistd and the scripts from elsewhere
	$(BIN)/python -m twisted.trial --temp-directory=_trial_temp_smoke tests.integration.test_smoke_install

# ---------------------------------------------------------------------------------------------
# install: the package in its own virtualenv, and the service files.
#   make install                           venv /usr/local/lib/wazuhcluster, service files in /etc
#   make install PREFIX=/opt/wazuhcluster  venv /opt/wazuhcluster/lib/wazuhcluster
#   make install VENV=/opt/wz              that venv instead (only when given on the command line)
#   make install WAZUH_HOME=/srv/wazuh     the node's home written into the service files
#   make install DESTDIR=/tmp/stage        everything under /tmp/stage, for a look without root
# The venv is built at its final path under DESTDIR, so its scripts name that path: a staged
# tree is for inspection, not for copying elsewhere (build a wheel for packages).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
WAZUH_HOME ?= /var/wazuh-manager
INSTALL_VENV ?= $(if $(filter command line,$(origin VENV)),$(VENV),$(PREFIX)/lib/wazuhcluster)
INSTALL_BIN := $(DESTDIR)$(INSTALL_VENV)/bin
INSTALL_ETC := $(DESTDIR)$(SYSCONFDIR)
INSTALL_DOC := $(DESTDIR)$(PREFIX)/share/doc/wazuhcluster
# the files in etc/ name the default paths; write the chosen ones instead
SERVICE_PATHS := sed -e 's|/usr/local/lib/wazuhcluster|$(INSTALL_VENV)|g' \
	-e 's|/var/wazuh-manager|$(WAZUH_HOME)|g' \
	-e 's|/etc/default/wazuhcluster|$(SYSCONFDIR)/default/wazuhcluster|g' \
	-e 's|/etc/init.d/wazuhcluster|$(SYSCONFDIR)/init.d/wazuhcluster|g'

.PHONY: install

install: ## install in a venv under PREFIX, service files under SYSCONFDIR (see the Makefile)
	$(PYTHON) -m venv $(DESTDIR)$(INSTALL_VENV)
	$(INSTALL_BIN)/pip install -q .
	# twistd cannot write its plugin cache as the service user: write it now, as the installer
	$(INSTALL_BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	install -d $(INSTALL_ETC)/systemd/system $(INSTALL_ETC)/init.d $(INSTALL_ETC)/default \
		$(INSTALL_ETC)/logrotate.d $(INSTALL_DOC)
	$(SERVICE_PATHS) etc/systemd/wazuhcluster@.service > $(INSTALL_ETC)/systemd/system/wazuhcluster@.service
	$(SERVICE_PATHS) etc/init.d/wazuhcluster > $(INSTALL_ETC)/init.d/wazuhcluster
	$(SERVICE_PATHS) etc/logrotate.d/wazuhcluster > $(INSTALL_ETC)/logrotate.d/wazuhcluster
	chmod 0644 $(INSTALL_ETC)/systemd/system/wazuhcluster@.service $(INSTALL_ETC)/logrotate.d/wazuhcluster
	chmod 0755 $(INSTALL_ETC)/init.d/wazuhcluster
	# an existing defaults file is the operator's: keep it, put ours beside it
	if [ -e $(INSTALL_ETC)/default/wazuhcluster ]; then \
		$(SERVICE_PATHS) etc/default/wazuhcluster > $(INSTALL_ETC)/default/wazuhcluster.new; \
		echo "kept $(INSTALL_ETC)/default/wazuhcluster; the new one is wazuhcluster.new"; \
	else \
		$(SERVICE_PATHS) etc/default/wazuhcluster > $(INSTALL_ETC)/default/wazuhcluster; \
	fi
	install -m 0644 etc/wazuh-manager.conf.example etc/nginx/wazuhcluster-lb.conf README.md $(INSTALL_DOC)/
	@echo "installed. Next, as root:"
	@echo "  useradd --system --user-group --home-dir $(WAZUH_HOME) --shell /usr/sbin/nologin wazuh-manager"
	@echo "  install -d -o wazuh-manager -g wazuh-manager -m 0750 $(WAZUH_HOME) $(WAZUH_HOME)/etc"
	@echo "  cp $(PREFIX)/share/doc/wazuhcluster/wazuh-manager.conf.example $(WAZUH_HOME)/etc/wazuh-manager.conf"
	@echo "  $(INSTALL_VENV)/bin/wazuh-cluster-certs --home $(WAZUH_HOME) ca   (then: node NAME --address IP)"
	@echo "  systemctl daemon-reload && systemctl enable --now wazuhcluster@master   (or @worker)"
	@echo "  or, without systemd: $(SYSCONFDIR)/init.d/wazuhcluster start (ROLE in $(SYSCONFDIR)/default/wazuhcluster)"

.PHONY: bench-cluster
# e.g. make bench-cluster BENCH_CLUSTER_ARGS="--stable 60" (or "--sweep --stable 60")
BENCH_CLUSTER_ARGS ?=

bench-cluster: $(BENCH_STAMP) ## master + 10 workers, 50,000 agents, 5-minute stable phase, beside Wazuh's thresholds
	$(BIN)/python bench/bench_cluster.py $(BENCH_CLUSTER_ARGS)

# ---------------------------------------------------------------------------------------------
# Reliability (docs/RELIABILITY.md): long fuzzing, more fault rounds and the full load run.
FUZZ_TESTS := tests.test_fuzz_amp tests.test_fuzz_agents tests.test_fuzz_paths
SOAK_ROUNDS ?= 25
SOAK_SEED ?= 9
SOAK_WORKERS ?= 10
SOAK_AGENTS ?= 20000
SOAK_SECONDS ?= 600
SOAK_KEEPALIVE ?= 10
SOAK_REPORT ?= soak-report.json
SOAK_FAILOVER_ROUNDS ?= 20
SOAK_ATTACK_ROUNDS ?= 10
#: The issue-17 attack and fault tests that repeat their attack WAZUHCLUSTER_ATTACK_ROUNDS times.
ATTACK_TESTS := tests.integration.test_enrollment_faults tests.integration.test_hostile_listeners \
	tests.integration.test_control_restart tests.integration.test_faults_logs.LogsReadOnlyTests

.PHONY: fuzz soak soak-failover soak-attacks

fuzz: $(STAMP) ## hypothesis fuzzing of AMP commands, enrollment lines, agent frames, sync paths (10,000 cases each)
	WAZUHCLUSTER_FUZZ=fuzz $(BIN)/python -b -m twisted.trial --temp-directory=_trial_temp_fuzz $(FUZZ_TESTS)

soak-failover: $(STAMP) ## SOAK_FAILOVER_ROUNDS rounds of kill -9 of the master (real etcd) during enrollment bursts
	WAZUHCLUSTER_FAILOVER_ROUNDS=$(SOAK_FAILOVER_ROUNDS) $(BIN)/python -b -m twisted.trial \
		--temp-directory=_trial_temp_soak tests.integration.test_failover_soak

soak-attacks: $(STAMP) ## SOAK_ATTACK_ROUNDS rounds of each enrollment fault (kill, full and read-only var/db), listener flood, control-socket kill -9 and read-only logs test
	WAZUHCLUSTER_ATTACK_ROUNDS=$(SOAK_ATTACK_ROUNDS) $(BIN)/python -b -m twisted.trial \
		--temp-directory=_trial_temp_soak $(ATTACK_TESTS)

soak: $(STAMP) soak-failover soak-attacks ## soak-failover, soak-attacks, SOAK_ROUNDS kill rounds per scenario, network faults, then SOAK_WORKERS/SOAK_AGENTS for SOAK_SECONDS
	WAZUHCLUSTER_FAULT_ROUNDS=$(SOAK_ROUNDS) WAZUHCLUSTER_FAULT_SEED=$(SOAK_SEED) \
		$(BIN)/python -b -m twisted.trial --temp-directory=_trial_temp_soak \
		tests.integration.test_faults_kill tests.integration.test_faults_network
	WAZUHCLUSTER_LOAD_WORKERS=$(SOAK_WORKERS) WAZUHCLUSTER_LOAD_AGENTS=$(SOAK_AGENTS) \
		WAZUHCLUSTER_LOAD_SECONDS=$(SOAK_SECONDS) WAZUHCLUSTER_LOAD_REPORT=$(SOAK_REPORT) \
		WAZUHCLUSTER_LOAD_KEEPALIVE=$(SOAK_KEEPALIVE) \
		$(BIN)/python -b -m twisted.trial --temp-directory=_trial_temp_soak tests.integration.test_load_real
