# Every target sets itself up on a fresh Debian/Ubuntu machine: a virtualenv in .venv and,
# when missing, Debian's prometheus package (the demo and the integration tests run a real one).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup prometheus demo test unit lint bench e2e clean

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

setup: $(STAMP) prometheus

prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "Installing Debian's prometheus package (needs root)..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

demo: setup
	$(BIN)/python -m linepool.sandbox.demo

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/schema -q

test: setup lint
	$(BIN)/pytest -q

bench: setup
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
