# Set-up and checks. Every target creates/reuses .venv, installs $(TORCH) first (the CPU
# build by default; GPU users: make TORCH="torch --index-url https://download.pytorch.org/whl/cu124" ...),
# then the package with the extras it needs.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: demo test test-all bench lint install system-deps clean parity learning-parity

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# EGL for headless MuJoCo rendering (dm-control); installed only when missing.
system-deps:
	@if ! ldconfig -p | grep -q libEGL.so; then \
	  echo "installing EGL for MuJoCo rendering (apt)"; \
	  apt-get update -qq && apt-get install -y -qq libegl1 libgl1 libglvnd0 >/dev/null; \
	fi

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[atari,dmc,minatar,dist,video,dev]"
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(BIN)/reverie demo

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "" --timeout 3600

bench: install
	$(BIN)/reverie bench --preset debug --updates 20
	$(BIN)/reverie bench --preset atari --updates 3 --json benchmarks/results/speed/$$(hostname)-$$(date +%F).json
	$(BIN)/python -m benchmarks.env_speed
	$(BIN)/python -m benchmarks.peaks --json benchmarks/results/speed/$$(hostname)-$$(date +%F)-peaks.json

lint: install
	$(BIN)/ruff check src tests benchmarks

# Parity with the official TF2 agent (issue #16): a second venv with dreamerv2==2.2.0 and its
# TF 2.15 stack next to Reverie, then tests/parity in it (both agents in one process).
# REVERIE_PARITY=1 makes a failed import of the official side an error, not a skip.
PARITY_PYTHON ?= python3.11
PVENV := .venv-parity
PBIN := $(PVENV)/bin
PSTAMP := $(PVENV)/.installed
PCONSTRAINT := -c tests/parity/constraints.txt

$(PBIN)/python:
	$(PARITY_PYTHON) -m venv $(PVENV)
	$(PBIN)/pip install -q --upgrade pip

$(PSTAMP): pyproject.toml tests/parity/requirements.txt tests/parity/constraints.txt | $(PBIN)/python
	$(PBIN)/pip install -q "$(TORCH)" $(PCONSTRAINT)
	$(PBIN)/pip install -q -r tests/parity/requirements.txt $(PCONSTRAINT)
	$(PBIN)/pip install -q --no-deps dreamerv2==2.2.0
	$(PBIN)/pip install -q -e ".[dev]" $(PCONSTRAINT)
	touch $(PSTAMP)

parity: $(PSTAMP)
	REVERIE_PARITY=1 REVERIE_PARITY_DOC=docs/PARITY.md $(PBIN)/python -m pytest -q tests/parity

# Learning parity (benchmarks/learning_parity.py): the official agent trained by its own loop
# (dreamerv2.api.train, in .venv-parity, which also gets minatar) next to `reverie train`, same
# hyper parameters, tasks and seeds; curves, areas and wall time in
# benchmarks/results/learning_parity/. The defaults take about 10 core-hours (5 h on 2 cores);
# LP_ARGS overrides them, e.g. make learning-parity LP_ARGS="--tasks gym_CartPole-v1 --seeds 0,1".
# The report is written even when a run crashed (listed as such); then make fails with run's code.
LP_ARGS ?=

$(PVENV)/.minatar: $(PSTAMP)
	$(PBIN)/pip install -q -e ".[dev,minatar]" $(PCONSTRAINT)
	touch $@

learning-parity: $(STAMP) $(PSTAMP) $(PVENV)/.minatar
	$(BIN)/python -m benchmarks.learning_parity run $(LP_ARGS); code=$$?; [ $$code -ne 2 ] || exit 2; \
	$(BIN)/python -m benchmarks.learning_parity report $(LP_ARGS) && exit $$code

clean:
	rm -rf $(VENV) $(PVENV) build *.egg-info
