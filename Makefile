PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: any looser requirement would download CUDA builds
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# Zennit, the LRP reference the rule tests compare with; its declared dependencies pull
	# torchvision, which the tests replace by placeholders (tests/helpers/zennit.py)
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python zennit==1.0.0
	# lxt, the AttnLRP reference the transformer rules are compared with op by op; its declared
	# dependencies pull torchvision and bitsandbytes, so it is installed without them
	$(PY) -m pip install --quiet --no-deps lxt==2.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pellucid demo --out demo-report

# the browser test renders the report in Debian's chromium; install it where we can (root, apt)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing and cannot be installed here: the browser test will skip"; fi; }

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.methods

clean:
	rm -rf $(VENV) demo-report .pytest_cache .ruff_cache
