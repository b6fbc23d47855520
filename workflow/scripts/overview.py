"""Rule overview: the summary tables and confusion figures -> the report's first screen."""

from soundharvest.io import run_logged
from soundharvest.overview import overview_file

keys = [tuple(k) for k in snakemake.params.pairs]
run_logged(
    snakemake.log[0],
    overview_file,
    snakemake.input.summary,
    snakemake.input.by_model,
    dict(zip(keys, snakemake.input.confusion, strict=True)),
    snakemake.output[0],
)
