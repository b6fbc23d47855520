"""Rule convert: a batch of downloads -> 16 kHz mono wavs (empty if skipped), statuses, manifest."""

from soundharvest.acquire.convert import convert_batch
from soundharvest.io import run_logged

c = snakemake.params.convert
run_logged(
    snakemake.log[0],
    convert_batch,
    list(snakemake.params.videos),
    snakemake.params.downloads,
    snakemake.params.out,
    snakemake.output[0],
    sample_rate=c["sample_rate"],
    max_seconds=c["max_seconds"],
    min_seconds=c["min_seconds"],
    silence_dbfs=c["silence_dbfs"],
    ffmpeg=c["ffmpeg"],
)
