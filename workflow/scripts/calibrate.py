"""Rule calibrate: a predictor's temperature, label biases, top-label map and 'unknown'
thresholds, fitted and measured on the scores of its held-out and synthetic clips."""

from soundharvest.calibrate import calibrate_file
from soundharvest.io import run_logged

c = snakemake.params.calibration
run_logged(
    snakemake.log[0],
    calibrate_file,
    snakemake.input.scores,
    snakemake.output.calibration,
    snakemake.output.clips,
    holdout=snakemake.params.holdout,
    on_topic_reject=c["on_topic_reject"],
    distance_share=c["distance_share"],
    on_topic_reject_level=c["on_topic_reject_level"],
)
