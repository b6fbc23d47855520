"""Rule shuffle: every label's frames -> N equal shards of randomly permuted frames."""

from soundharvest.dataset import shuffle
from soundharvest.io import run_logged

d = snakemake.params.dataset
run_logged(
    snakemake.log[0],
    shuffle,
    list(zip(snakemake.params.labels, snakemake.input.frames, strict=True)),
    list(snakemake.output.shards),
    seed=snakemake.params.seed,
    memory_budget_mb=d["memory_budget_mb"],
    balance=d["balance"],
    cap_per_label=d["cap_per_label"],
    labels_path=snakemake.output.labels,
)
