# interp — set-up, tests, demo and benchmarks. Every target creates .venv idempotently.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg
ifneq ($(wildcard ../shared/ci/constraints.txt),)
export PIP_CONSTRAINT ?= $(abspath ../shared/ci/constraints.txt)
endif

LOCK := requirements.lock
TORCH_LOCK := requirements-torch.lock
PYTEST := -m pytest tests -q -p no:cacheprovider

.PHONY: install test demo bench clean lock test-latest test-oldest coverage

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs come from the lock: every package exact and hash-checked, then torch (the CPU wheel
# here, through PIP_CONSTRAINT / find-links), then this project without touching its deps.
$(STAMP): $(BIN)/python pyproject.toml $(LOCK) $(TORCH_LOCK)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet -r $(TORCH_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python $(PYTEST)

demo: $(STAMP)
	$(BIN)/interp demo

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Every causal-LM / masked-LM / image-text-to-text architecture of the installed transformers,
# built from tiny configs and checked (docs/coverage.md + coverage.json; several minutes).
coverage: $(STAMP)
	$(BIN)/python -m tools.coverage

# Refresh requirements.lock / requirements-torch.lock (see tools/lock.sh; TORCH=X.Y.Z to move torch).
lock:
	tools/lock.sh

# Compatibility beyond the lock, in throwaway venvs: the newest releases pyproject allows, and
# its lowest bounds (uv's lowest-direct resolution). torch stays where PIP_CONSTRAINT puts it.
test-latest:
	rm -rf .venv-latest && $(PY) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	.venv-latest/bin/pip install --quiet --upgrade --upgrade-strategy eager -e ".[test]"
	.venv-latest/bin/pip list --format=freeze > .venv-latest/versions.txt
	.venv-latest/bin/python $(PYTEST)

test-oldest:
	tools/oldest_env.sh .venv-oldest
	.venv-oldest/bin/python $(PYTEST)

clean:
	rm -rf $(VENV) .venv-latest .venv-oldest .venv-tools runs
