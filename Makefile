# The two commands the README starts with. Each installs what it needs into .venv.
#   make quickstart   tune LightGBM locally on an embedded PostgreSQL
#   make test         run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: quickstart test lint crd

$(PY):
	python3 -m venv $(VENV)

# The quickstart needs only the LightGBM extra.
$(VENV)/.quickstart: pyproject.toml | $(PY)
	$(PIP) -e '.[lightgbm]'
	touch $@

# torch first, pinned to the CPU build on this machine's disk; then everything else.
$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[operator,client,lightgbm,xgboost,lightning,dev]'
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

quickstart: $(VENV)/.quickstart
	$(VENV)/bin/kubetune run examples/quickstart.yaml

test: $(VENV)/.dev
	$(PY) -m pytest -n 2

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

crd: $(VENV)/.quickstart
	$(VENV)/bin/kubetune crd > crds/study.yaml
