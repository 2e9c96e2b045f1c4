# ocibuild developer and CI entry points. `make test` is what .ci/run runs.
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed-stamp
# pytest-xdist: the suite keeps per-worker state (buildah storage roots, tmp dirs); loadgroup
# keeps the buildah and ocibuild halves of one differential case on the same worker.
JOBS   ?= 2
PYTEST_ARGS ?=
LAYERS_OUT ?= out/layers

.PHONY: deps venv test demo bench clean distclean

## deps: system packages (apt-get, only when missing) and QEMU binfmt registration
deps:
	@scripts/install-deps.sh
	@scripts/setup-binfmt.sh

## venv: .venv with ocibuild installed editable plus test extras (redone when pyproject changes)
venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $@

## test: the whole suite; exit 5 (no tests collected) fails like any other failure
test: deps venv
	$(VENV)/bin/python -m pytest -n $(JOBS) --dist loadgroup -ra $(PYTEST_ARGS)

## e2e: only the end-to-end tests (tests/e2e: debian base from layers/, apt-get install under RUN
## for amd64 and arm64; root, QEMU binfmt and the Debian mirror). `make test` runs them too.
.PHONY: e2e
e2e: deps venv
	$(VENV)/bin/python -m pytest -m e2e -ra $(PYTEST_ARGS) tests/e2e

## demo: build examples/hello for three platforms and inspect the result
demo: deps venv
	@mkdir -p out
	$(VENV)/bin/ocibuild build --platform linux/amd64,linux/arm64,linux/arm/v7 \
		-t example/hello:1.0 --output type=oci,dest=out/hello.tar examples/hello
	$(VENV)/bin/ocibuild inspect out/hello.tar

## layers: build every layers/*.yaml base image into $(LAYERS_OUT)/<name> (OCI layouts; needs apt
## lists of the foreign architectures, which add-foreign-archs.sh adds when missing)
.PHONY: layers
layers: venv
	@scripts/add-foreign-archs.sh
	$(VENV)/bin/python -m ocibuild.layerspec layers/ $(LAYERS_OUT)

## bench: run bench/run when it exists
bench: deps venv
	@if [[ -x bench/run ]]; then bench/run; else echo "bench/run does not exist yet"; fi

clean:
	rm -rf out build dist .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
