"""Checkpoint candidates: every label's search tables -> one label's merged candidate list."""

from soundharvest.acquire.search import merge_candidates, tables_by_label, write_merged
from soundharvest.io import run_logged


def main():
    tables = tables_by_label(snakemake.input.search)
    merged = merge_candidates(tables, snakemake.params.cross_label)
    write_merged(merged[merged["label"] == snakemake.wildcards.label], snakemake.output[0])


run_logged(snakemake.log[0], main)
