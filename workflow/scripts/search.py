"""Rule search: one query of one label -> ranked candidates TSV."""

from soundharvest.acquire.search import run_search
from soundharvest.io import run_logged

p = snakemake.params.search
run_logged(
    snakemake.log[0],
    run_search,
    p["source"],
    p["options"],
    p["label"],
    p["query"],
    p["n_results"],
    snakemake.output[0],
    min_duration=p["min_duration"],
    max_duration=p["max_duration"],
)
