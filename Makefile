# Mesh LLM — every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKEND ?= cpu
MODEL ?= smollm2
GGUF ?=
PORT ?= 9337
PYTEST_ARGS ?=

.PHONY: help install deps llama proto lint test test-unit test-integration e2e run bench helm-check compose-check test-containers image compose-up compose-down clean

help:
	@echo "make run          install, build llama.cpp, serve a small chat model on :$(PORT)"
	@echo "                  (MODEL=name or GGUF=path to choose another)"
	@echo "make test         lint, then every test (unit, integration, end to end, containers)"
	@echo "make llama        build the pinned llama.cpp (BACKEND=cpu|cuda|rocm|vulkan)"
	@echo "make proto        regenerate the gRPC stubs from proto/"
	@echo "make bench        gateway overhead benchmark"
	@echo "make image        build the container image (BACKEND=cpu; podman where no Docker)"
	@echo "make compose-up   run the stack with compose, one container per service; compose-down stops it"
	@echo "make helm-check   lint and validate the Helm chart (offline)"
	@echo "make compose-check  validate the compose files and the Dockerfile (offline)"
	@echo "make test-containers  build the image, run the compose stacks (one box, two boxes)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV) …"
	@$(PY) -m pip install --disable-pip-version-check -U pip > $(VENV)/install.log 2>&1 \
	  && $(PY) -m pip install --disable-pip-version-check -e '.[dev]' >> $(VENV)/install.log 2>&1 \
	  || { tail -20 $(VENV)/install.log; echo "pip install failed (full log: $(VENV)/install.log)"; exit 1; }
	@touch $@

install: $(VENV)/.installed

deps:
	@scripts/system-deps.sh

llama:
	@BACKEND=$(BACKEND) scripts/build-llama.sh

proto: install
	@PYTHON=$(PY) scripts/gen-proto.sh

lint: install
	@$(VENV)/bin/ruff format --check services tests bench
	@$(VENV)/bin/ruff check services tests bench

test: deps install llama lint
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: deps install llama
	@$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: deps install llama
	@$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

run: deps install llama
	@$(VENV)/bin/mesh-llm serve $(if $(GGUF),--gguf $(GGUF),--model $(MODEL)) --port $(PORT)

image:
	@BACKEND=$(BACKEND) scripts/build-image.sh $(BACKEND)

# Without MESH_MODEL: the built-in SmolLM2, fetched here and mounted. The stack makes its own
# CA; `mesh-llm invite --credentials /credentials/node` inside the gateway container mints tokens.
compose-up: image install
	@if [ -z "$${MESH_MODEL:-}" ]; then \
	  model=$$($(PY) -m meshllm.registry fetch smollm2 | tail -1) || exit 1; \
	  export MESH_MODELS_DIR=$$(dirname "$$model") MESH_MODEL=/models/$$(basename "$$model"); \
	fi; \
	scripts/compose.sh up

compose-down:
	@scripts/compose.sh down

helm-check: install
	@echo "checking the Helm chart: helm lint --strict, helm template + kubernetes-validate …"
	@$(PY) -m pytest tests/deploy/test_deploy_files.py -k "helm or manifests or daemonset or probes or grace or schedulers" $(PYTEST_ARGS)

compose-check: install
	@echo "checking the compose files (docker compose config) and the Dockerfile (hadolint) …"
	@$(PY) -m pytest tests/deploy/test_deploy_files.py -k "compose or dockerfile or image_build" $(PYTEST_ARGS)

test-containers: deps install llama
	@echo "building the image and running the compose stacks for real …"
	@$(PY) -m pytest tests/deploy/test_compose_up.py $(PYTEST_ARGS)

bench: deps install llama
	@$(PY) bench/gateway_overhead.py --markdown

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
