# Two commands on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Coverage gate for the exact-semantics core (issue 2: at least 95%).
COV := --cov=ratiolab.objectives --cov=ratiolab.advantages --cov=ratiolab.correction --cov=ratiolab.kl \
       --cov-report=term --cov-fail-under=95

.PHONY: install demo test test-fast lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch must come first: a plain `torch` requirement would pull a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,ray,trackers]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ratiolab demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks recipes
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q $(COV) $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
