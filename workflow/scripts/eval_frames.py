"""Rule eval_frames: every evaluation note -> its highest-energy frame and its labels (and, to
average codes over a note, its loud frames)."""

from soundharvest.evaluate.frames import eval_frames
from soundharvest.io import run_logged

f = snakemake.params.features
run_logged(
    snakemake.log[0],
    eval_frames,
    snakemake.input[0],
    snakemake.output.frames,
    snakemake.output.notes,
    f["kind"],
    f["params"],
    sample_rate=f["sample_rate"],
    families=snakemake.params.families,
    out_loud=snakemake.output.get("loud"),
    out_loud_note=snakemake.output.get("loud_note"),
    loud_db=snakemake.params.loud_db,
)
