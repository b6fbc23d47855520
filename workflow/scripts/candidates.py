"""Checkpoint candidates: every label's search tables -> one label's merged candidate list."""

from pathlib import Path

from soundharvest.acquire.search import merge_candidates, write_merged
from soundharvest.io import run_logged


def main():
    tables = {}
    for path in snakemake.input.search:  # results/search/<label>/<query_id>.tsv
        tables.setdefault(Path(path).parent.name, []).append(path)
    merged = merge_candidates(tables, snakemake.params.cross_label)
    write_merged(merged[merged["label"] == snakemake.wildcards.label], snakemake.output[0])


run_logged(snakemake.log[0], main)
