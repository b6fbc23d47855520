"""Rule label_noise_truth (demo source): precision and recall of the flagged clips."""

from soundharvest.io import run_logged
from soundharvest.noise import score_noise_against_truth

run_logged(
    snakemake.log[0],
    score_noise_against_truth,
    snakemake.input[0],
    snakemake.params.downloads,
    snakemake.output[0],
)
