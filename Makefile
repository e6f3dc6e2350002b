# Two commands on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Coverage gate for the exact-semantics core (issue 2: at least 95%).
COV := --cov=ratiolab.objectives --cov=ratiolab.advantages --cov=ratiolab.correction --cov=ratiolab.kl \
       --cov-report=term --cov-fail-under=95

.PHONY: install demo test test-fast lint browser clean

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

# Headless Chromium for tests/report/test_report_browser.py: Debian's package where apt-get and root are at hand;
# anywhere else (or if the install fails) the test is skipped with its reason, and `make test` goes on.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the browser test"; \
	    (apt-get -qq -o DPkg::Lock::Timeout=120 update && DEBIAN_FRONTEND=noninteractive \
	     apt-get -qq -y -o DPkg::Lock::Timeout=120 install chromium) >/dev/null 2>&1 || \
	    echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "no chromium and no root apt-get: the browser test will be skipped"; fi; }

test: lint browser
	$(PY) -m pytest -q $(COV) $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
