# Features: spectrogram per file and kind -> concatenate per label -> shuffle into shards.


rule spectrogram:
    input:
        f"{R}/convert/{{video_id}}.wav",
    output:
        frames=f"{R}/spectrogram/{{kind}}/{{video_id}}.npy",
        energy=f"{R}/spectrogram/{{kind}}/{{video_id}}.energy.npy",
    log:
        f"{LOGS}/spectrogram/{{kind}}/{{video_id}}.log",
    conda:
        "../../envs/features.yaml"
    params:
        kind=lambda wildcards: wildcards.kind,
        features=lambda wildcards: feature_params(wildcards.kind),
        dtype=config["features"]["dtype"],
        silence_threshold_db=config["features"]["silence_threshold_db"],
    script:
        "../scripts/spectrogram.py"


rule concatenate:
    input:
        frames=lambda wildcards: expand(
            f"{R}/spectrogram/{{{{kind}}}}/{{video_id}}.npy",
            video_id=training_ids(wildcards.label),
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
