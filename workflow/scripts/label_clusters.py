"""Rule label_clusters: k-means on codes of training frames, each cluster named by its majority
query label -> a predictor directory (weights, clusters, meta), and how every training clip's
frames vote (the label-noise report's input), from one pass over the training codes."""

from soundharvest.io import run_logged
from soundharvest.predict import label_clusters_file

c = snakemake.params.clusters
run_logged(
    snakemake.log[0],
    label_clusters_file,
    list(snakemake.input.shards),
    snakemake.input.labels,
    snakemake.input.weights or None,
    snakemake.params.out_dir,
    k=c["k"],
    sample_frames=c["sample_frames"],
    seed=snakemake.params.seed,
    max_k=c["max_k"],
    features=snakemake.params.features,
    model_name=snakemake.wildcards.model,
    sources=list(snakemake.input.sources),
    holdout=snakemake.params.holdout,
    silence_dbfs=snakemake.params.silence_dbfs,
    votes_tsv=snakemake.output.votes,
    scratch_dir=getattr(snakemake.resources, "tmpdir", None),
    device=snakemake.config["encode"]["device"],
)
