"""Rule elbow: merge a model's sweep chunks, choose the elbow per max_k, plot the inertia."""

from soundharvest.evaluate.pipeline import elbow_file
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    elbow_file,
    list(snakemake.input.chunks),
    snakemake.output.sweep,
    snakemake.output.elbows,
    snakemake.output.figure,
    snakemake.params.max_k,
    snakemake.params.labelings,
    title=snakemake.params.title,
    out_elbow_png=snakemake.output.elbow_figure,
)
