# soundharvest: `make run` (the default, offline demo run) and `make test` are all a user needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed

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
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	@echo
	@echo "Done. Results are in results/: open results/report.html;"
	@echo "the summary table is results/summary.tsv, the catalog of videos results/catalog.csv."

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
