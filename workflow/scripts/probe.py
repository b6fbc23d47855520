"""Rule probe: the linear probe (standardise, logistic regression, stratified k-fold) of the
notes' families from one model's frozen codes."""

from soundharvest.evaluate.probe import probe_file
from soundharvest.io import run_logged

p = snakemake.params
run_logged(
    snakemake.log[0],
    probe_file,
    snakemake.input.codes,
    snakemake.input.notes,
    snakemake.output[0],
    p.kind,
    p.model,
    folds=p.folds,
    seed=p.seed,
    C=p.C,
    max_iter=p.max_iter,
)
