"""Rule spectrogram: a batch of wavs -> frames x bins in [0, 1], per-frame energy, manifest."""

from soundharvest.features import spectrogram_batch
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    spectrogram_batch,
    list(snakemake.params.videos),
    snakemake.params.wavs,
    snakemake.params.out,
    snakemake.output[0],
    snakemake.params.kind,
    snakemake.params.features,
    dtype=snakemake.params.dtype,
    silence_threshold_db=snakemake.params.silence_threshold_db,
)
