"""Rule score_clips: the uncalibrated predictor's logits and typicality distance for every
held-out training clip and every synthetic off-topic clip."""

from pathlib import Path

from soundharvest.calibrate import score_clips_file
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    score_clips_file,
    Path(snakemake.input.predictor).parent,
    snakemake.input.catalog,
    snakemake.params.convert_dir,
    snakemake.output.scores,
    holdout=snakemake.params.holdout,
    downloads=snakemake.params.downloads or None,
    n_synthetic=snakemake.params.synthetic,
    seed=snakemake.params.seed,
    device=snakemake.config["encode"]["device"],
)
