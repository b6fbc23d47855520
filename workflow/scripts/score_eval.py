"""Rule score_eval: the family of every evaluation note through the model's label model, from
its code and from its whole file as `soundharvest predict` answers it."""

from pathlib import Path

from soundharvest.evaluate.scoring import score_eval_file
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    score_eval_file,
    snakemake.input.codes,
    snakemake.input.notes,
    Path(snakemake.input.predictor).parent,
    snakemake.input.families,
    snakemake.output.scores,
    snakemake.output.confusion,
    out_confusion_tsv=snakemake.output.confusion_table,
    out_closed_confusion_tsv=snakemake.output.closed_confusion_table,
    calibration_json=snakemake.input.calibration,
    nsynth_dir=snakemake.input.eval_set,
    out_answers_tsv=snakemake.output.answers,
    device=snakemake.config["encode"]["device"],
)
