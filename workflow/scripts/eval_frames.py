"""Rule eval_frames: every evaluation note -> its highest-energy frame and its labels."""

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
)
