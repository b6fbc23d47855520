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

.PHONY: run test lint gmbank bench dag report clean

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

# Three pytest workers (pytest-xdist), each taking whole test files in tests/conftest.py's order:
# the SLURM test, which mostly waits on its scheduler, and the tiny workflow run the workflow
# tests share (made once for all workers, tests/workflow/conftest.py) run beside the unit tests.
TEST_WORKERS ?= 3
test: lint gmbank
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Debian's csound-soundfont (sf_GMbank.sf2), the second soundfont of config/gmbank.yaml and of
# the cross-soundfont tests: installed when missing and possible (root and apt-get); never fails
# the run (without it those tests skip, saying why).
GMBANK := /usr/share/sounds/sf2/sf_GMbank.sf2
APT_GMBANK = timeout 600 env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0 \
	--no-install-recommends install csound-soundfont >/dev/null 2>&1
gmbank:
	@test -f $(GMBANK) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& echo "installing csound-soundfont ($(GMBANK)) with apt-get" \
		&& { $(APT_GMBANK) || { timeout 300 apt-get -qq update >/dev/null 2>&1 && $(APT_GMBANK); }; } \
		&& test -f $(GMBANK); } \
		|| echo "note: $(GMBANK) is missing and could not be installed (that needs root, apt-get and a package registry): the cross-soundfont tests skip"

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
