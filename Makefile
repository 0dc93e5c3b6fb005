# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export PLATFORM_HOME ?= $(CURDIR)/.platform
export DAGSTER_HOME ?= $(PLATFORM_HOME)/dagster_home
DEMO_ARGS ?=

.PHONY: install secrets demo dev test lint bench bench-venv catalog approve stop loop _loop loop-ui

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
# The local calendar: the first daily partition is the demo's first day, fixed when the platform
# home is first set up, so the UI counts the demo's days and nothing before them.
DEMO_DAYS ?= 14
CALENDAR := $(PLATFORM_HOME)/calendar.env
# Who may promote a model version to champion: on a laptop its user, unless MODEL_APPROVERS says.
WITH_SETTINGS := set -a && . $(SECRETS) && . $(CALENDAR) && \
	MODEL_APPROVERS=$${MODEL_APPROVERS:-$$(id -un)} && set +a &&

# Each secret is generated once and kept: a home made before a secret existed gains it.
secrets:
	mkdir -p $(DAGSTER_HOME)
	touch $(SECRETS)
	grep -q '^PSEUDONYMIZATION_KEY=' $(SECRETS) || python3 -c 'import secrets; print("PSEUDONYMIZATION_KEY=" + secrets.token_hex(32))' >> $(SECRETS)
	grep -q '^SERVING_TOKEN=' $(SECRETS) || python3 -c 'import secrets; print("SERVING_TOKEN=" + secrets.token_urlsafe(32))' >> $(SECRETS)

$(CALENDAR):
	mkdir -p $(PLATFORM_HOME)
	echo "PIPELINE_START_DATE=$$(date -u -d '-$(DEMO_DAYS) days' +%F)" > $@

# The Dagster instance configuration (run monitoring), copied again whenever the template changes.
DAGSTER_YAML := $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_YAML): deploy/local/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: install secrets $(CALENDAR) $(DAGSTER_YAML)
	$(WITH_SETTINGS) $(PY) demo.py --days $(DEMO_DAYS) $(DEMO_ARGS)

dev: install secrets $(CALENDAR) $(DAGSTER_YAML)
	$(WITH_SETTINGS) $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3001

# The closed loop: 40 simulated days, drift from day 30, in a home of its own (its calendar starts
# 40 days back, and the demo's lake stays as it was). Each run starts afresh; its service keeps
# serving the last champion until `make stop PLATFORM_HOME=.platform-loop`.
LOOP_HOME := $(CURDIR)/.platform-loop
LOOP_DAYS ?= 40
LOOP_ARGS ?=
LOOP_SETTINGS := PLATFORM_HOME=$(LOOP_HOME) DAGSTER_HOME=$(LOOP_HOME)/dagster_home

loop: install
	$(PY) -m serving.deploy stop --state-dir $(LOOP_HOME)/serving
	rm -rf $(LOOP_HOME)
	$(MAKE) --no-print-directory _loop $(LOOP_SETTINGS) DEMO_DAYS=$(LOOP_DAYS)

_loop: secrets $(CALENDAR) $(DAGSTER_YAML)
	$(WITH_SETTINGS) $(PY) loop.py --days $(DEMO_DAYS) $(LOOP_ARGS)

# The loop's runs, sensors and assets in the UI.
loop-ui:
	$(MAKE) --no-print-directory dev $(LOOP_SETTINGS)

# Two workers, one test file each: the suite's slow files (training, Pipes, servers) overlap.
test: install
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

catalog: install
	$(PY) -m registry

# Promote a model version that passed its gates to champion: make approve MODEL=m VERSION=n
approve: install secrets $(CALENDAR)
	$(WITH_SETTINGS) $(PY) -m jobs.promote $(MODEL) $(VERSION) --reason "$(or $(REASON),approved)"

# Stop the model services the demo (or a deploy job) left running on this machine.
stop: install
	$(PY) -m serving.deploy stop --state-dir $(PLATFORM_HOME)/serving

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Benchmarks. The project side needs the `bench` extra (pandas, numpy, fastavro) in $(VENV); Feast
# runs only in its own venv, $(BENCH_VENV) (its pins conflict with the project's stack), which
# bench/pit_join.py and bench/online.py start as a subprocess. The online benchmark also starts a
# throwaway redis-server. Smaller runs: `make bench BENCH_ROWS=100000 BENCH_PIT_FEATURE_ROWS=...`.
BENCH_VENV ?= .venv-bench
# bench/pit_join.py names its anchor after this version ("feast-0.67-file").
FEAST_VERSION := 0.67.0
# Absolute: pit_join.py starts it from inside its work directory.
FEAST_PY = $(abspath $(BENCH_VENV))/bin/python
BENCH_ROWS ?= 1000000
BENCH_PIT_FEATURE_ROWS ?= 1000000
BENCH_PIT_ENTITY_ROWS ?= 100000
BENCH_ONLINE_ENTITIES ?= 100000
BENCH_ONLINE_SINGLES ?= 5000
BENCH_ONLINE_BATCHES ?= 500

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

# The stamp names the Feast version, so changing it reinstalls and nothing else does.
$(BENCH_VENV)/.installed-feast-$(FEAST_VERSION):
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q 'feast[redis]==$(FEAST_VERSION)'
	rm -f $(BENCH_VENV)/.installed-feast-*
	touch $@

bench-venv: $(BENCH_VENV)/.installed-feast-$(FEAST_VERSION)

bench: $(VENV)/.bench-installed bench-venv
	@command -v redis-server >/dev/null || { echo "bench/online.py needs redis-server (apt-get install redis-server)" >&2; exit 1; }
	$(PY) bench/medallion.py --rows $(BENCH_ROWS)
	$(PY) bench/pit_join.py --feature-rows $(BENCH_PIT_FEATURE_ROWS) --entity-rows $(BENCH_PIT_ENTITY_ROWS) --feast-python $(FEAST_PY)
	$(PY) bench/training.py --threads 1
	$(PY) bench/online.py --entities $(BENCH_ONLINE_ENTITIES) --singles $(BENCH_ONLINE_SINGLES) --batches $(BENCH_ONLINE_BATCHES) --feast-python $(FEAST_PY)
