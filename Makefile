# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export PLATFORM_HOME ?= $(CURDIR)/.platform
export DAGSTER_HOME ?= $(PLATFORM_HOME)/dagster_home
DEMO_ARGS ?=

.PHONY: install demo dev test lint bench features

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a plain requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Local secrets (the pseudonymization key), generated once inside the git-ignored platform home.
SECRETS := $(PLATFORM_HOME)/secrets.env
WITH_SECRETS := set -a && . $(SECRETS) && set +a &&

$(SECRETS):
	mkdir -p $(DAGSTER_HOME)
	python3 -c 'import secrets; print("PSEUDONYMIZATION_KEY=" + secrets.token_hex(32))' > $@

# The Dagster instance configuration (run monitoring), copied again whenever the template changes.
DAGSTER_YAML := $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_YAML): deploy/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: install $(SECRETS) $(DAGSTER_YAML)
	$(WITH_SECRETS) $(PY) demo.py $(DEMO_ARGS)

dev: install $(SECRETS) $(DAGSTER_YAML)
	$(WITH_SECRETS) $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3001

test: install
	$(VENV)/bin/pytest -q

features: install
	$(PY) -m feature_store.registry

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/medallion.py --rows 1000000
	$(PY) bench/pit_join.py --feature-rows 1000000 --entity-rows 100000
	$(PY) bench/online.py
