"""Rule calibrate: a predictor's temperature and 'unknown' threshold, fitted and measured on
held-out training clips and synthetic off-topic clips."""

from pathlib import Path

from soundharvest.calibrate import calibrate_file
from soundharvest.io import run_logged

c = snakemake.params.calibration
run_logged(
    snakemake.log[0],
    calibrate_file,
    Path(snakemake.input.predictor).parent,
    snakemake.input.catalog,
    snakemake.params.convert_dir,
    snakemake.output.calibration,
    snakemake.output.clips,
    holdout=c["holdout"],
    on_topic_reject=c["on_topic_reject"],
    downloads=snakemake.params.downloads or None,
    n_synthetic=c["synthetic"],
    distance_share=c["distance_share"],
    on_topic_reject_level=c["on_topic_reject_level"],
    seed=snakemake.params.seed,
    device=snakemake.config["encode"]["device"],
)
