"""Rule download: a batch of videos -> the download store (audio, info, status) and a manifest."""

from soundharvest.acquire.store import download_batch
from soundharvest.config import download_options
from soundharvest.io import run_logged

run_logged(
    snakemake.log[0],
    download_batch,
    snakemake.params.source,
    download_options(snakemake.config),  # not a parameter: see rule convert's comment
    snakemake.params.candidates,
    snakemake.params.store,
    snakemake.output[0],
)
