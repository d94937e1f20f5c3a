# wakeline — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= default
WAKE_WORD ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast bench bench-accuracy bench-ablation lint-imports compile lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "wakeline needs Python 3.11, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

install: $(VENV)/.installed ## create .venv (if missing) and install the locked dependencies

run: install ## run the pipeline locally on PRESET (default: default); WAKE_WORD="hey nabu" to change it
	$(VENV)/bin/wakeline run --preset $(PRESET) $(if $(WAKE_WORD),--wake-word "$(WAKE_WORD)")

test: install ## the whole test suite, slow tests included (GPU tests skip themselves without a GPU)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## every test but the `slow` ones (those that train, synthesise a dataset or start a server)
	$(PY) -m pytest -m "not slow" -n auto $(PYTEST_ARGS)

bench: install ## benchmarks -> runs/bench/<benchmark>.json (all but accuracy and ablation)
	$(PY) -m benchmarks

bench-accuracy: install ## wakeline vs the official model on held-out voices, conditions and real speech; "hey chatterbox" at 3 seeds (~80 min alone on 2 cores)
	$(PY) -m benchmarks accuracy

bench-ablation: install ## what each part of the training data buys, on real recordings (~30 min per variant)
	$(PY) -m benchmarks ablation

lint-imports: install ## check the architecture rules (pyproject.toml [tool.importlinter]: layers, stages independent, serving apart from training, kfp only in components)
	$(VENV)/bin/lint-imports

compile: install ## compile the pipeline IR -> pipeline/compiled/wakeline.yaml
	$(VENV)/bin/wakeline compile

lock: ## re-resolve pyproject.toml into requirements.lock in a throwaway venv
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet --upgrade pip && .lockvenv/bin/pip install --quiet '.[dev]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -iv '^wakeline' > requirements.lock
	rm -rf .lockvenv

clean: ## remove the venv and local runs
	rm -rf $(VENV) runs .pytest_cache

# Images and Kind (scripts/*.sh). None of these run on a machine without Docker; DRY_RUN=1 prints the commands.
# Offline, in this order: base-image (debootstrap: no registry needed), wheelhouse (the one step that needs a
# package index), images (docker build --network=none), run-containers.
REGISTRY ?= ghcr.io/wakeline
CLUSTER ?= wakeline
FLAVORS ?= cpu
BASE_IMAGE ?= wakeline-base:bookworm-python3.11
DRY_RUN ?=
.PHONY: base-image wheelhouse images images-push run-containers test-containers kind-up kind-load

base-image: ## (root) make BASE_IMAGE from Debian bookworm with debootstrap + Debian's Python 3.11: no registry needed
	scripts/base-image.sh --image "$(BASE_IMAGE)" $(if $(DRY_RUN),--dry-run)

wheelhouse: $(if $(DRY_RUN),,install) ## download/build every wheel of the lock into wheelhouse/<flavor> (FLAVORS: cpu; "cpu gpu")
	@for flavor in $(FLAVORS); do PYTHON="$(abspath $(PY))" scripts/wheelhouse.sh $$flavor $(if $(DRY_RUN),--dry-run) || exit 1; done

# The wheelhouse each image copies; `make wheelhouse` stamps it. Missing or older than the lock: stop and say so.
wheelhouse/%/.complete: requirements.lock images/build-tools.txt
	@echo "wheelhouse/$* is missing or older than requirements.lock or images/build-tools.txt: run \`make wheelhouse FLAVORS=$*\` (the image build itself has no network)" >&2; exit 2

images: $(if $(DRY_RUN),,$(foreach f,$(FLAVORS),wheelhouse/$(f)/.complete)) ## docker build REGISTRY/wakeline-<flavor>:<version> for FLAVORS (cpu) on BASE_IMAGE from the wheelhouse, no network
	PYTHON="$(PYTHON)" BASE_IMAGE="$(BASE_IMAGE)" FLAVORS="$(FLAVORS)" scripts/images.sh build --registry "$(REGISTRY)" $(if $(DRY_RUN),--dry-run)

images-push: images ## build, then docker push the FLAVORS images to REGISTRY
	PYTHON="$(PYTHON)" FLAVORS="$(FLAVORS)" scripts/images.sh push --registry "$(REGISTRY)" $(if $(DRY_RUN),--dry-run)

run-containers: install ## the smoke preset with every stage in its own container (kfp.local DockerRunner, cpu image)
	$(VENV)/bin/wakeline run --preset smoke --runner docker --registry "$(REGISTRY)" \
	  $(if $(filter gpu,$(FLAVORS)),,--cpu-image-only)

test-containers: install ## the `container` tests: the image against the lock, its user and layers, a container smoke run
	$(PY) -m pytest -m container $(PYTEST_ARGS)

kind-up: ## create the Kind cluster CLUSTER, install KFP 2.17.0, port-forward its UI to localhost:8080
	scripts/kind-up.sh --name "$(CLUSTER)" $(if $(DRY_RUN),--dry-run)

kind-load: ## load the FLAVORS images (REGISTRY, package version; the names `make images` builds) into CLUSTER
	PYTHON="$(PYTHON)" FLAVORS="$(FLAVORS)" scripts/kind-load.sh --name "$(CLUSTER)" --registry "$(REGISTRY)" $(if $(DRY_RUN),--dry-run)
