"""Rule convert: a downloaded file -> 16 kHz mono wav (empty if skipped) and its status."""

from soundharvest.acquire.convert import convert_file
from soundharvest.io import run_logged

c = snakemake.params.convert
run_logged(
    snakemake.log[0],
    convert_file,
    snakemake.input[0],
    snakemake.output.wav,
    snakemake.output.status,
    sample_rate=c["sample_rate"],
    max_seconds=c["max_seconds"],
    min_seconds=c["min_seconds"],
    silence_dbfs=c["silence_dbfs"],
    ffmpeg=c["ffmpeg"],
)
