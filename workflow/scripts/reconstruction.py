"""Rule reconstruction: invert a sample of notes' features (and each model's reconstruction)
back to audio, and measure what each loses."""

from soundharvest.io import run_logged
from soundharvest.reconstruct import reconstruction_file

r = snakemake.params.reconstruction
run_logged(
    snakemake.log[0],
    reconstruction_file,
    snakemake.input.eval_set,
    snakemake.input.notes,
    snakemake.output.audio,
    snakemake.output.table,
    snakemake.output.summary,
    features=snakemake.params.features,
    models=snakemake.params.models,
    n_notes=r["n_notes"],
    n_iter=r["griffin_lim_iter"],
    seed=snakemake.params.seed,
    out_players_html=snakemake.output.players,
)
