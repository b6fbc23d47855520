# Training: one job per model x feature kind, on the shuffled shards. A GPU rule (`train`);
# the passes that run a trained encoder after it (label_clusters, embed, score_clips, score_eval)
# take theirs from `encode`.


rule train:
    input:
        shards=expand(
            f"{R}/shuffle/{{{{kind}}}}/shard-{{i:02d}}.npy",
            i=range(config["dataset"]["n_shards"]),
        ),
        positives=lambda wildcards: positive_sources(wildcards),
    output:
        weights=f"{R}/train/{{kind}}/{{trained_model}}/weights.safetensors",
        curves=f"{R}/train/{{kind}}/{{trained_model}}/curves.tsv",
        figure=report(
            f"{R}/train/{{kind}}/{{trained_model}}/curves.png",
            caption="../report/curves.rst",
            category="2. Training",
            labels={"model": "{trained_model}", "features": "{kind}"},
        ),
    log:
        f"{LOGS}/train/{{kind}}/{{trained_model}}.log",
    benchmark:
        f"{BENCH}/train/{{kind}}/{{trained_model}}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=config["train"]["mem_mb"],
        runtime=config["train"]["runtime"],
        gpu=config["train"]["gpu"],
        gpu_model=config["train"]["gpu_model"] or None,
    params:
        model=lambda wildcards: model_params(wildcards.trained_model),
        architecture=lambda wildcards: architecture_of(wildcards.trained_model),
        features=lambda wildcards: feature_spec(wildcards.kind),
        device=config["train"]["device"],
        checkpoint_every=config["train"]["checkpoint_every"],
        holdout=config["calibration"]["holdout"],
        checkpoint=lambda wildcards: f"{R}/train/{wildcards.kind}/{wildcards.trained_model}/checkpoint.pt",
    script:
        "../scripts/train.py"
