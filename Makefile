# kstrata — every target does its own set-up: a fresh clone needs only
# Python >= 3.11, Go >= 1.25, make and git.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONTROLPLANE := $(BIN)/python tools/controlplane/controlplane.py
NODE := $(BIN)/python tools/node/node.py

.PHONY: lock test-latest test-deps help venv lint test test-unit test-cluster e2e build-controlplane cluster node cluster-down demo bench clean kind-deploy

help:
	@echo "make test          lint + the whole test suite (unit and real control plane)"
	@echo "make demo          build and start the local control plane, run kstrata, show it working"
	@echo "make cluster       start the local control plane (idempotent); prints export KUBECONFIG=..."
	@echo "make node          (root) the cluster with a real node: containerd, kubelet, local images"
	@echo "make e2e           (root) the end-to-end tier alone: kstrata as pods, serving pods"
	@echo "make cluster-down  stop it (and undo every change the node made to this machine)"
	@echo "make lint          ruff, mypy --strict (package and tests), import-linter"
	@echo "make bench         benchmarks (SCALE=1: also the 10x scale one); results go to docs/performance.md by hand"
	@echo "make fuzz          every atheris fuzz target for FUZZ_SECONDS (300) each; tests/fuzz/README.md"
	@echo "make kind-deploy   with Docker and kind: build the image, install kstrata and the examples in kind"

# Development, test and CI dependencies come from the hashed lock only
# (requirements/dev.txt); the package itself is installed on top without
# dependencies, so nothing unlocked slips in.  pyproject.toml keeps ranges for
# users; `make test-latest` checks that the newest versions they allow still work.
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
LOCK := $(BIN)/uv pip compile --quiet --universal --generate-hashes --python-version 3.11 \
	--custom-compile-command 'make lock'

$(STAMP): pyproject.toml requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes --no-deps -r requirements/dev.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

# Refresh the locks from pyproject.toml (newest versions its ranges allow).
lock: $(STAMP)
	$(LOCK) pyproject.toml -o requirements/runtime.txt
	$(LOCK) pyproject.toml requirements/build.in --extra dev -o requirements/dev.txt

# The package with the plain ranges of pyproject.toml (what `pip install kstrata`
# gives a user today) in a throw-away venv, and the unit tier against it.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --disable-pip-version-check '.[dev]'
	.venv-latest/bin/python -m pytest -q -m "not cluster" -p no:cacheprovider tests

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests tools benchmarks examples
	$(BIN)/ruff format --check operator tests tools benchmarks examples
	$(BIN)/mypy
	$(BIN)/mypy tests
	$(BIN)/lint-imports

build-controlplane: $(STAMP)
	$(CONTROLPLANE) build

test-unit: $(STAMP)
	$(BIN)/pytest -m "not cluster"

e2e: build-controlplane
	$(BIN)/pytest -m e2e

test-cluster: build-controlplane
	$(BIN)/pytest -m cluster

# Slow one-time set-up happens before pytest, outside its per-test timeout:
# the pinned third-party tools (helm and promtool are Go builds of minutes on
# a fresh machine) and, as root, the node's images (debootstrap, buildah).
# Each is a no-op when its cache is current.
test-deps: $(STAMP)
	$(BIN)/python tools/gotools/install.py helm promtool krew flux-source-controller flux-kustomize-controller argo-rollouts kubeseal sealed-secrets-controller sops age-keygen
	if [ "$$(id -u)" = 0 ]; then \
	  $(BIN)/python tools/gotools/install.py lua5.1 zsh fish && $(BIN)/python tools/images/images.py build; \
	fi

# One pytest run for every tier: the cluster tier starts one control plane per
# session, the e2e tier (root) a second one with a real node.
test: lint build-controlplane test-deps
	$(BIN)/pytest

cluster: build-controlplane
	@$(CONTROLPLANE) up

# Starts the control plane with its API server on the node bridge, so pods
# reach it (replacing a loopback-only `make cluster`), then the node.
node: build-controlplane
	@$(NODE) up

cluster-down: $(STAMP)
	@$(NODE) down

demo: build-controlplane
	$(BIN)/python examples/demo.py

# bench_scale.py (20,000 objects on one replica) takes tens of minutes on two
# cores: it runs only with `make bench SCALE=1`.
SCALE ?= 0
bench: build-controlplane
	KSTRATA_BENCH_SCALE=$(SCALE) $(BIN)/python benchmarks/run.py

# The short run of each fuzz target is part of `make test` (tests/fuzz); this is
# the longer one.  FUZZ_ARGS=--merge minimises new finds into tests/fuzz/corpus.
FUZZ_SECONDS ?= 300
FUZZ_ARGS ?=
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz/runner.py --seconds $(FUZZ_SECONDS) $(FUZZ_ARGS)

clean:
	-$(NODE) down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# With Docker and kind only (the rest of this Makefile needs neither): build the
# operator image, load it into the kind cluster of kind-cluster.yaml (created if
# absent), install manifests/, wait for the operator, apply the examples.
KIND ?= kind
DOCKER ?= docker
KUBECTL ?= kubectl
KIND_CLUSTER ?= kstrata
IMAGE ?= kstrata-operator:dev
EXAMPLES_NAMESPACE ?= kstrata-demo

kind-deploy:
	$(KIND) get clusters | grep -qx '$(KIND_CLUSTER)' || $(KIND) create cluster --name '$(KIND_CLUSTER)' --config kind-cluster.yaml
	$(DOCKER) build -f operator/Dockerfile -t '$(IMAGE)' .
	$(KIND) load docker-image '$(IMAGE)' --name '$(KIND_CLUSTER)'
	$(KUBECTL) --context 'kind-$(KIND_CLUSTER)' apply -k manifests/overlays/local
	$(KUBECTL) --context 'kind-$(KIND_CLUSTER)' -n kstrata-system rollout status deployment/kstrata --timeout=180s
	$(KUBECTL) --context 'kind-$(KIND_CLUSTER)' create namespace '$(EXAMPLES_NAMESPACE)' --dry-run=client -o yaml | $(KUBECTL) --context 'kind-$(KIND_CLUSTER)' apply -f -
	# The API server picks up the caBundle the operator wrote within seconds: retry briefly.
	n=0; until $(KUBECTL) --context 'kind-$(KIND_CLUSTER)' -n '$(EXAMPLES_NAMESPACE)' apply -f examples/config/ -f examples/workloads/; do \
	  n=$$((n + 1)); [ $$n -lt 6 ] || exit 1; sleep 5; \
	done
	$(KUBECTL) --context 'kind-$(KIND_CLUSTER)' -n '$(EXAMPLES_NAMESPACE)' wait configprofile --all --for=condition=Ready --timeout=60s

# --- Pinned third-party tools (tools/gotools/tools.toml), installed when missing ---
# tests/integrations installs them itself; these only do it ahead of time
# (the installer needs only Python >= 3.11 and Go, or root for apt).
.PHONY: tool-helm tool-promtool tool-lua
tool-helm: ; $(PYTHON) tools/gotools/install.py helm
tool-promtool: ; $(PYTHON) tools/gotools/install.py promtool
tool-lua: ; $(PYTHON) tools/gotools/install.py lua5.1
