"""Rule train: one model on one feature kind's shards -> weights, curves TSV and figure."""

from soundharvest.io import run_logged
from soundharvest.train import TrainSettings, train

settings = TrainSettings.from_entry(
    snakemake.params.model, snakemake.params.architecture, snakemake.params.holdout
)
run_logged(
    snakemake.log[0],
    train,
    list(snakemake.input.shards),
    snakemake.output.weights,
    snakemake.output.curves,
    snakemake.output.figure,
    settings,
    positives=list(snakemake.input.positives) or None,
    device=snakemake.params.device,
    threads=snakemake.threads,
    checkpoint_path=snakemake.params.checkpoint,
    checkpoint_every=snakemake.params.checkpoint_every,
    metadata={"model": snakemake.wildcards.trained_model, "features": snakemake.params.features},
)
