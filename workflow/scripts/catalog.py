"""Rule catalog: every candidate of every label with its status and reason -> one CSV."""

from pathlib import Path

from soundharvest.acquire.catalog import build_catalog, write_catalog
from soundharvest.io import run_logged


def main():
    tables = {}
    for path in snakemake.input.search:  # results/search/<label>/<query_id>.tsv
        tables.setdefault(Path(path).parent.name, []).append(path)
    statuses = {Path(p).stem: p for p in snakemake.input.status}  # convert/<video_id>.json
    catalog = build_catalog(tables, statuses, cross_label=snakemake.params.cross_label)
    write_catalog(catalog, snakemake.output[0])


run_logged(snakemake.log[0], main)
