"""Rule download: one video -> the download store (audio as published, info JSON, status)."""

from soundharvest.acquire.store import download_to_store
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    download_to_store,
    snakemake.params.source,
    snakemake.params.options,
    snakemake.params.candidate,
    snakemake.params.store,
    snakemake.output[0],
)
