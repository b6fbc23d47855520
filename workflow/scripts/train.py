"""Rule train: one model on one feature kind's shards -> weights, curves TSV and figure."""

from soundharvest.io import run_logged
from soundharvest.train import train

m = snakemake.params.model
run_logged(
    snakemake.log[0],
    train,
    list(snakemake.input.shards),
    snakemake.output.weights,
    snakemake.output.curves,
    snakemake.output.figure,
    model_type=m["type"],
    arch=snakemake.params.architecture,
    frames=m.get("frames", 0),
    batch_size=m["batch_size"],
    lr=m["lr"],
    advweight=m["advweight"],
    reg=m["reg"],
    seed=m["seed"],
    device=snakemake.params.device,
    threads=snakemake.threads,
    checkpoint_path=snakemake.params.checkpoint,
    checkpoint_every=snakemake.params.checkpoint_every,
    metadata={"model": snakemake.wildcards.trained_model, "features": snakemake.params.features},
    normalize=m["normalize"],
    positives=list(snakemake.input.positives) or None,
    max_offset=m["max_offset"],
    temperature=m["temperature"],
    recon_weight=m["recon_weight"],
    positive_scope=m["positive_scope"],
    gain_jitter=m.get("gain_jitter", 0.0),
    eq_jitter=m.get("eq_jitter", 0.0),
    pitch_jitter=m.get("pitch_jitter", 0.0),
    lr_schedule=m.get("lr_schedule", "constant"),
    label_weight=m.get("label_weight", 0.0),
    loss=m["loss"],
    gce_q=m["gce_q"],
    holdout=snakemake.params.holdout if m["type"] == "classifier" else 0.0,
)
