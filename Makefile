# soundharvest: `make run` (the default, offline demo run) and `make test` are all a user needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed
# An overlay on config/config.yaml, e.g. `make run CONFIG=config/best.yaml` (empty: the default).
CONFIG ?=
CONFIG_ARGS = $(if $(CONFIG),--configfile $(CONFIG))
# The run's results folder (an overlay may move it), read once the venv exists.
RESULTS = $(shell $(BIN)/python -c "import sys, yaml; d = {}; \
	[d.update(yaml.safe_load(open(f)) or {}) for f in sys.argv[1:]]; \
	print(d.get('results', 'results'))" config/config.yaml $(CONFIG))

.PHONY: run test lint bench dag report clean

# Create or update the virtual environment whenever the pinned requirements change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# tinysoundfont declares pyaudio, which is only for live playback and does not build headless.
	$(BIN)/python -m pip install --quiet --no-deps tinysoundfont==0.3.7
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(CONFIG_ARGS)
	$(BIN)/snakemake --report $(RESULTS)/report.html $(CONFIG_ARGS)
	@echo
	@echo "Done. Results are in $(RESULTS)/: open $(RESULTS)/report.html;"
	@echo "the summary tables are $(RESULTS)/summary.tsv and $(RESULTS)/summary_by_model.tsv,"
	@echo "the catalog of videos $(RESULTS)/catalog.csv."

test: lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check src tests workflow/scripts bench
	$(BIN)/ruff format --check src tests workflow/scripts bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

dag: $(STAMP)
	$(BIN)/snakemake --rulegraph --forceall | dot -Tsvg > docs/rulegraph.svg

clean:
	rm -rf results logs benchmarks .snakemake
