"""Rule label_noise: each training clip's disagreement with its query's label, per query."""

from pathlib import Path

from soundharvest.io import run_logged
from soundharvest.noise import label_noise_file

run_logged(
    snakemake.log[0],
    label_noise_file,
    snakemake.input.votes,
    Path(snakemake.input.predictor).parent,
    snakemake.input.catalog,
    snakemake.output.clips,
    snakemake.output.queries,
    threshold=snakemake.params.threshold,
    queries=snakemake.params.queries,
)
