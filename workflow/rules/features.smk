# Features: spectrogram per batch of videos and kind -> concatenate per label -> shuffle into shards.


# Features of each feature kind, per batch of videos (see rule convert).
rule spectrogram:
    input:
        f"{BATCHES}/convert/{{batch}}.tsv",
    output:
        f"{BATCHES}/spectrogram/{{kind}}/{{batch}}.tsv",
    log:
        f"{LOGS}/spectrogram/{{kind}}/{{batch}}.log",
    benchmark:
        f"{BENCH}/spectrogram/{{kind}}/{{batch}}.tsv"
    conda:
        "../../envs/features.yaml"
    params:
        kind=lambda wildcards: wildcards.kind,
        features=lambda wildcards: feature_params(wildcards.kind),
        dtype=config["features"]["dtype"],
        silence_threshold_db=config["features"]["silence_threshold_db"],
        videos=batch_videos,
        wavs=f"{R}/convert",
        out=lambda wildcards: f"{R}/spectrogram/{wildcards.kind}",
    script:
        "../scripts/spectrogram.py"


# A label's frames, from the batches that hold its videos (their manifests are the inputs; the
# per-video frames are beside them, named by video).
rule concatenate:
    input:
        batches=lambda wildcards: batch_manifests(
            "spectrogram", label=wildcards.label, kind=wildcards.kind
        ),
    output:
        frames=f"{R}/concatenate/{{kind}}/{{label}}.npy",
        index=f"{R}/concatenate/{{kind}}/{{label}}.index.tsv",
    log:
        f"{LOGS}/concatenate/{{kind}}/{{label}}.log",
    benchmark:
        f"{BENCH}/concatenate/{{kind}}/{{label}}.tsv"
    conda:
        "../../envs/features.yaml"
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        video_ids=lambda wildcards: training_ids(wildcards.label),
        frames=lambda wildcards: [
            f"{R}/spectrogram/{wildcards.kind}/{vid}.npy"
            for vid in training_ids(wildcards.label)
        ],
        dtype=config["features"]["dtype"],
        n_bins=lambda wildcards: n_bins(wildcards.kind, feature_params(wildcards.kind)),
    script:
        "../scripts/concatenate.py"


rule shuffle:
    input:
        frames=expand(f"{R}/concatenate/{{{{kind}}}}/{{label}}.npy", label=LABELS),
    output:
        shards=expand(
            f"{R}/shuffle/{{{{kind}}}}/shard-{{i:02d}}.npy",
            i=range(config["dataset"]["n_shards"]),
        ),
        labels=f"{R}/shuffle/{{kind}}/labels.json",
    log:
        f"{LOGS}/shuffle/{{kind}}.log",
    benchmark:
        f"{BENCH}/shuffle/{{kind}}.tsv"
    conda:
        "../../envs/features.yaml"
    resources:
        mem_mb=config["dataset"]["memory_budget_mb"] + 512,
        runtime=120,
    params:
        labels=LABELS,
        seed=config["seed"],
        dataset=config["dataset"],
    script:
        "../scripts/shuffle.py"
