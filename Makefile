# The two commands the README starts with. Each installs what it needs into .venv.
#   make quickstart   tune LightGBM locally on an embedded PostgreSQL
#   make test         build the images, then run the whole test suite
#   make images       build the operator and CPU trial images with podman (docs/images.md)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: quickstart test lint crd images image-names images-cuda

# The images: ONE set of names, tagged with the chart's appVersion. The chart's values,
# the release workflow and the docs use these; tests/images checks they agree.
VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/kubetune/Chart.yaml)
IMAGE_REGISTRY ?= ghcr.io/kubetune
OPERATOR_IMAGE ?= $(IMAGE_REGISTRY)/operator:$(VERSION)
TRIAL_IMAGE ?= $(IMAGE_REGISTRY)/trial:$(VERSION)
TRIAL_CUDA_IMAGE ?= $(IMAGE_REGISTRY)/trial:$(VERSION)-cuda
# The engine (podman or docker) and the base image: scripts/image-env.sh (as root with
# podman, a Debian-package base that needs no registry; otherwise python:3.11.7-slim-bookworm).
# Set CONTAINER_ENGINE or BASE_IMAGE to choose.
export CONTAINER_ENGINE BASE_IMAGE

$(PY):
	python3 -m venv $(VENV)

# The quickstart needs the command (the cli extra) and the LightGBM extra.
$(VENV)/.quickstart: pyproject.toml | $(PY)
	$(PIP) -e '.[cli,lightgbm]'
	touch $@

# torch first, pinned to the CPU build on this machine's disk; then everything else.
$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[cli,operator,client,lightgbm,xgboost,lightning,dev]'
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

quickstart: $(VENV)/.quickstart
	$(VENV)/bin/kubetune run examples/quickstart.yaml

# The tests run the images (tests/harness/images.py reuses what `make images` built).
test: $(VENV)/.dev images
	scripts/test-host.sh
	$(PY) -m pytest -n 2

# Cheap when nothing changed: podman reuses its cached layers.
images:
	scripts/container-host.sh
	scripts/build-image.sh operator $(OPERATOR_IMAGE)
	scripts/build-image.sh trial $(TRIAL_IMAGE)

# The CUDA trial image: several GB of NVIDIA wheels from PyPI (the release workflow builds it).
images-cuda:
	scripts/container-host.sh
	scripts/build-image.sh trial $(TRIAL_CUDA_IMAGE) cuda

image-names:
	@echo $(OPERATOR_IMAGE) $(TRIAL_IMAGE) $(TRIAL_CUDA_IMAGE)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The chart ships a copy (tests/chart checks they are the same).
crd: $(VENV)/.quickstart
	$(VENV)/bin/kubetune crd > crds/study.yaml
	cp crds/study.yaml charts/kubetune/crds/study.yaml
