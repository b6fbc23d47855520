"""Rule metrics_figure: purity, RI and NMI against k for every model (thesis figure 4.10)."""

from soundharvest.evaluate.pipeline import metrics_figure_file
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    metrics_figure_file,
    list(snakemake.input.sweeps),
    snakemake.params.models,
    snakemake.output[0],
    snakemake.params.labeling,
)
