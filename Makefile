# Two commands set everything up on a fresh machine with Python 3.11 and pip:
#   make demo   — venv + install, train configs/tiny.py on synthetic video, write a sample
#   make test   — venv + install with the test, convert and tfds extras, run the whole suite
PYTHON ?= python3
# The importer tests need torch. Name the CPU wheel: a bare "torch" resolves to a CUDA build
# of several GB on PyPI.
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/tiny
PROMPT ?= a red circle moving right

.PHONY: demo test bench install clean

$(VENV)/.installed-base: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.py $(VENV)/.installed-base
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,convert,tfds,gcs]"
	# The FVD I3D parity reference (piergiaj's InceptionI3d); --no-deps: it would pull torchvision.
	$(PY) -m pip install --quiet --no-deps cd-fvd==0.1.1
	# Debian's Chromium for the report page's browser test (tests/test_report.py), where apt-get
	# runs as root; elsewhere that test is skipped and the page's structure is still checked.
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    >/dev/null 2>&1 || echo "note: chromium not installed; the browser test will be skipped"; \
	fi
	touch $@

install: $(VENV)/.installed-test

demo: $(VENV)/.installed-base
	$(PY) -m videogen.train --config configs/tiny.py --workdir $(WORKDIR)
	$(PY) -m videogen.sample --workdir $(WORKDIR) --prompt "$(PROMPT)" --output $(WORKDIR)/sample.mp4 --upscale 8
	$(PY) -m videogen.evaluate --workdir $(WORKDIR) --metrics synthetic,flicker,warping --num_prompts 48 --prompt_set plain

# A worker that crashes ends the run with that test named (pytest-xdist 3.8 under loadfile
# re-runs a crashed test on each replacement and can then deadlock); a test that hangs fails
# after 15 minutes (about 5x the slowest on a slow 2-core machine) instead of eating CI's.
test: $(VENV)/.installed-test
	$(PY) -m pytest -n 2 --dist loadfile --max-worker-restart=0 --timeout=900 -q --durations=15 tests

bench: $(VENV)/.installed-base
	$(PY) -m videogen.bench

clean:
	rm -rf $(VENV) runs .cache
