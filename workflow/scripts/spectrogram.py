"""Rule spectrogram: one wav -> frames x bins in [0, 1] and per-frame energy."""

from soundharvest.features import spectrogram_file
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    spectrogram_file,
    snakemake.input[0],
    snakemake.output.frames,
    snakemake.output.energy,
    snakemake.params.kind,
    snakemake.params.features,
    dtype=snakemake.params.dtype,
    silence_threshold_db=snakemake.params.silence_threshold_db,
)
