"""Rule concatenate: all of a label's per-file frames -> one memory-mapped .npy and its index."""

from soundharvest.dataset import concatenate_batches
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    concatenate_batches,
    list(zip(snakemake.params.video_ids, snakemake.params.frames, strict=True)),
    list(snakemake.input.batches),
    snakemake.output.frames,
    snakemake.output.index,
    dtype=snakemake.params.dtype,
    n_bins=snakemake.params.n_bins,
)
