"""Rule eval_windows: every note's consecutive frames from its highest-energy frame on (the
datapoints of models with context)."""

from soundharvest.evaluate.frames import eval_windows
from soundharvest.io import run_logged

f = snakemake.params.features
run_logged(
    snakemake.log[0],
    eval_windows,
    snakemake.input.eval_set,
    snakemake.input.notes,
    snakemake.output[0],
    f["kind"],
    f["params"],
    snakemake.params.span,
    sample_rate=f["sample_rate"],
)
