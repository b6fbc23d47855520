"""Rule catalog: every candidate of every label with its status and reason -> one CSV."""

from soundharvest.acquire.catalog import build_catalog, write_catalog
from soundharvest.acquire.search import tables_by_label
from soundharvest.io import run_logged


def main():
    statuses = snakemake.params.statuses  # video id -> convert/<video_id>.json
    catalog = build_catalog(
        tables_by_label(snakemake.input.search), statuses, cross_label=snakemake.params.cross_label
    )
    write_catalog(catalog, snakemake.output[0])


run_logged(snakemake.log[0], main)
