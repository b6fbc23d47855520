"""Rule kmeans_sweep: k-means for one chunk of k on one model's codes, with metrics."""

from soundharvest.evaluate.pipeline import sweep_chunk_file
from soundharvest.io import run_logged

start, stop = snakemake.params.ks
run_logged(
    snakemake.log[0],
    sweep_chunk_file,
    snakemake.input.codes,
    snakemake.input.notes,
    snakemake.output[0],
    start,
    stop,
    snakemake.params.labelings,
    n_init=snakemake.params.n_init,
    seed=snakemake.params.seed,
)
