"""Rule projection: a 2-D picture of one model's codes, coloured by family."""

from soundharvest.evaluate.pipeline import projection_file
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    projection_file,
    snakemake.input.codes,
    snakemake.input.notes,
    snakemake.output[0],
    snakemake.params.method,
    seed=snakemake.params.seed,
)
