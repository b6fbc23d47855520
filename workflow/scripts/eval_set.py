"""Rule eval_set: render an NSynth-format evaluation set from the soundfont
(eval_set.soundfont, or the default), recorded in its provenance.json."""

from soundharvest.evaluate.nsynth import render_eval_set
from soundharvest.io import run_logged

e = snakemake.params.eval_set
run_logged(
    snakemake.log[0],
    render_eval_set,
    snakemake.output[0],
    e["families"],
    e["notes_per_family"],
    programs=e["programs"],
    seed=snakemake.params.seed,
    exclude=snakemake.params.exclude,
    soundfont=e["soundfont"],
)
