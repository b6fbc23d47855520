"""Rule embed: the evaluation frames' codes under one model or baseline."""

from soundharvest.evaluate.pipeline import embed_file
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    embed_file,
    snakemake.input.frames,
    snakemake.output[0],
    snakemake.params.model,
    weights=snakemake.input.weights or None,
    latent=snakemake.params.latent,
    seed=snakemake.params.seed,
    loud_npy=snakemake.input.get("loud"),
    loud_note_npy=snakemake.input.get("loud_note"),
    windows_npy=snakemake.input.get("windows"),
    device=snakemake.config["encode"]["device"],
)
