# Kanaria's one entry point. `make test` and `make demo` work from a fresh clone
# on a fresh machine: they create .venv, install the Python packages and the
# system tools they need (Debian's prometheus, wrk, nginx), and build the test
# control plane once into ~/.cache/kanaria.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON ?= python3

.PHONY: help setup system-deps control-plane images lint typecheck check-imports test test-fast node-up demo bench crd docs kind-up kind-down clean

help:
	@echo "make demo   - generate demo models and run a local rollout end to end"
	@echo "make test   - lint, type checks and the whole test suite (installs what it needs)"
	@echo "make lint   - ruff, import rules, Dockerfile lint"
	@echo "make bench  - benchmarks, printed as ratios against same-run baselines"
	@echo "make images - build the three images with podman (+ docker-archive tarballs)"
	@echo "make node-up - a real single-node cluster with Kanaria installed (root, Debian, no Docker)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

control-plane:
	bash scripts/build-control-plane.sh >/dev/null

# The operator, router and model-server images, tagged by content (a warm run builds
# nothing), on a base built from Debian packages unless KANARIA_BASE_IMAGE names one;
# the last line printed is JSON with the references and archive paths.
images: system-deps
	bash scripts/build-images.sh --save

check-imports: setup
	$(PY) scripts/check_imports.py

lint: setup check-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check kanaria model_server router operator tests bench scripts
	bash scripts/lint-dockerfiles.sh

typecheck: setup
	$(VENV)/bin/mypy kanaria model_server/kanaria_server router/kanaria_router operator/kanaria_operator scripts tests bench

# scripts/test.sh: the control-plane and image builds (cached: seconds when warm) run in
# the background while lint, mypy and the tests that need neither run; then the tests
# marked `built` run against them. It prints each phase's time at the end.
test:  # scripts/test.sh runs setup and system-deps itself, beside the control-plane build
	bash scripts/test.sh

test-fast: setup
	$(PY) -m pytest -m "not slow and not controlplane and not realnode" $(PYTEST_ARGS)

# The test suite's real single node, for a person: control plane, containerd, kubelet,
# kube-proxy, CoreDNS, the images, Prometheus, the chart and a sample ModelDeployment
# on this Debian machine (root, no Docker). Ctrl-C tears it all down.
node-up: setup system-deps control-plane
	KANARIA_CONTROL_PLANE="$$(bash scripts/build-control-plane.sh 2>/dev/null | tail -n1)" \
	  $(PY) -m tests.support.node_up $(NODE_ARGS)

demo: setup system-deps
	$(PY) -m kanaria.local.demo

bench: setup system-deps
	$(PY) -m bench $(BENCH_ARGS)

crd: setup
	$(VENV)/bin/kanaria crd > manifests/crds/modeldeployments.kanaria.io.yaml
	mkdir -p helm/kanaria/files/crds
	cp manifests/crds/modeldeployments.kanaria.io.yaml helm/kanaria/files/crds/

# The reference pages in docs/reference/ (flags and variables, ModelDeployment fields,
# metrics, Helm values), generated from the code; tests/test_docs.py fails when stale.
docs: setup
	$(PY) -m scripts.docgen

# A kind cluster with the three images, the chart and a sample (needs Docker and kind);
# `make kind-up MONITORING=1` adds kube-prometheus-stack and the monitoring pack.
MONITORING ?= 0
kind-up: setup
	MONITORING="$(MONITORING)" bash scripts/kind-up.sh

kind-down:
	bash scripts/kind-down.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
