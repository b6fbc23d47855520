"""Rule summary: one row per model x feature kind -> results/summary.tsv, and the mean and
spread over training seeds -> results/summary_by_model.tsv."""

from itertools import product

from soundharvest.evaluate.pipeline import summary_file
from soundharvest.io import run_logged

keys = list(product(snakemake.params.kinds, snakemake.params.models))
run_logged(
    snakemake.log[0],
    summary_file,
    dict(zip(keys, snakemake.input.sweeps, strict=True)),
    dict(zip(keys, snakemake.input.elbows, strict=True)),
    snakemake.output.summary,
    snakemake.params.n_families,
    score_tsvs=list(snakemake.input.scores),
    instances=snakemake.params.instances,
    by_model_tsv=snakemake.output.by_model,
    supervision=snakemake.params.supervision,
    probe_tsvs=list(snakemake.input.probes),
)
