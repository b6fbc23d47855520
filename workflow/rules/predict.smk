# From clusters to instruments: a cluster -> label model per model, its accuracy on the
# evaluation notes, the label-noise report of every query, and the reconstruction experiment.


rule label_clusters:
    input:
        shards=expand(
            f"{R}/shuffle/{{{{kind}}}}/shard-{{i:02d}}.npy",
            i=range(config["dataset"]["n_shards"]),
        ),
        labels=f"{R}/shuffle/{{kind}}/labels.json",
        weights=lambda wildcards: model_weights(wildcards),
        sources=expand(f"{R}/concatenate/{{{{kind}}}}/{{label}}.npy", label=LABELS),
    output:
        meta=f"{R}/predictor/{{kind}}/{{model}}/meta.json",
        votes=f"{R}/label_noise/{{kind}}/{{model}}.votes.tsv",
    log:
        f"{LOGS}/label_clusters/{{kind}}/{{model}}.log",
    benchmark:
        f"{BENCH}/label_clusters/{{kind}}/{{model}}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: config["encode"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=config["encode"]["gpu"],
        gpu_model=config["encode"]["gpu_model"] or None,
    params:
        out_dir=lambda wildcards, output: str(Path(output.meta).parent),
        clusters=config["label_clusters"],
        features=lambda wildcards: feature_spec(wildcards.kind),
        seed=config["seed"],
        holdout=config["calibration"]["holdout"],
        silence_dbfs=config["convert"]["silence_dbfs"],
    script:
        "../scripts/label_clusters.py"


rule score_clips:
    input:
        predictor=f"{R}/predictor/{{kind}}/{{model}}/meta.json",
        catalog=f"{R}/catalog.csv",
    output:
        scores=f"{R}/calibration/{{kind}}/{{model}}.scores.tsv",
    log:
        f"{LOGS}/score_clips/{{kind}}/{{model}}.log",
    benchmark:
        f"{BENCH}/score_clips/{{kind}}/{{model}}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: config["encode"]["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=config["encode"]["gpu"],
        gpu_model=config["encode"]["gpu_model"] or None,
    params:
        holdout=config["calibration"]["holdout"],
        synthetic=config["calibration"]["synthetic"],
        convert_dir=f"{R}/convert",
        downloads=STORE if SOURCE == "demo" else "",
        seed=config["seed"],
    script:
        "../scripts/score_clips.py"


# Fits on score_clips' table in seconds: the calibration's settings re-run only this.
rule calibrate:
    input:
        scores=f"{R}/calibration/{{kind}}/{{model}}.scores.tsv",
    output:
        calibration=f"{R}/predictor/{{kind}}/{{model}}/calibration.json",
        clips=report(
            f"{R}/calibration/{{kind}}/{{model}}.clips.tsv",
            caption="../report/calibration.rst",
            category="5. Recognition",
            subcategory="{kind}",
            labels={"model": "{model}", "table": "held-out and synthetic clips"},
        ),
    log:
        f"{LOGS}/calibrate/{{kind}}/{{model}}.log",
    benchmark:
        f"{BENCH}/calibrate/{{kind}}/{{model}}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        holdout=config["calibration"]["holdout"],
        calibration={
            k: config["calibration"][k]
            for k in ("on_topic_reject", "on_topic_reject_level", "distance_share")
        },
    script:
        "../scripts/calibrate.py"


rule score_eval:
    input:
        codes=f"{R}/embed/{{kind}}/{{model}}.npy",
        notes=f"{R}/eval_frames/{{kind}}.notes.tsv",
        predictor=f"{R}/predictor/{{kind}}/{{model}}/meta.json",
        calibration=f"{R}/predictor/{{kind}}/{{model}}/calibration.json",
        families=RESOURCES / "label_families.tsv",
        # The notes' audio: what `soundharvest predict` answers on each note's file.
        eval_set=eval_set_dir(),
    output:
        scores=f"{R}/scores/{{kind}}/{{model}}.tsv",
        answers=f"{R}/scores/{{kind}}/{{model}}.answers.tsv",
        confusion=report(
            f"{R}/figures/{{kind}}/{{model}}.confusion.png",
            caption="../report/confusion.rst",
            category="5. Recognition",
            subcategory="{kind}",
            labels={"model": "{model}", "figure": "confusion matrix"},
        ),
        confusion_table=f"{R}/scores/{{kind}}/{{model}}.confusion.tsv",
        closed_confusion_table=f"{R}/scores/{{kind}}/{{model}}.closed_confusion.tsv",
    log:
        f"{LOGS}/score_eval/{{kind}}/{{model}}.log",
    conda:
        "../../envs/evaluate.yaml"
    threads: config["encode"]["threads"]
    resources:
        gpu=config["encode"]["gpu"],
        gpu_model=config["encode"]["gpu_model"] or None,
    script:
        "../scripts/score_eval.py"


rule label_noise:
    input:
        predictor=f"{R}/predictor/{{kind}}/{{model}}/meta.json",
        votes=f"{R}/label_noise/{{kind}}/{{model}}.votes.tsv",
        catalog=f"{R}/catalog.csv",
    output:
        clips=report(
            f"{R}/label_noise/{{kind}}/{{model}}.clips.tsv",
            caption="../report/label_noise_clips.rst",
            category="6. Label noise",
            subcategory="{kind}",
            labels={"model": "{model}", "table": "clips"},
        ),
        queries=report(
            f"{R}/label_noise/{{kind}}/{{model}}.queries.tsv",
            caption="../report/label_noise_queries.rst",
            category="6. Label noise",
            subcategory="{kind}",
            labels={"model": "{model}", "table": "queries"},
        ),
    log:
        f"{LOGS}/label_noise/{{kind}}/{{model}}.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        threshold=config["label_noise"]["threshold"],
        queries=config["labels"],
    script:
        "../scripts/label_noise.py"


rule label_noise_truth:
    input:
        f"{R}/label_noise/{{kind}}/{{model}}.clips.tsv",
    output:
        report(
            f"{R}/label_noise/{{kind}}/{{model}}.truth.tsv",
            caption="../report/label_noise_truth.rst",
            category="6. Label noise",
            subcategory="{kind}",
            labels={"model": "{model}", "table": "against the demo's truth"},
        ),
    log:
        f"{LOGS}/label_noise_truth/{{kind}}/{{model}}.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        downloads=STORE,
    script:
        "../scripts/label_noise_truth.py"


rule reconstruction:
    input:
        eval_set=eval_set_dir(),
        notes=f"{R}/eval_frames/{KINDS[0]}.notes.tsv",
        weights=expand(
            f"{R}/train/{{kind}}/{{model}}/weights.safetensors",
            kind=KINDS,
            model=MODELS,
        ),
    output:
        audio=directory(f"{R}/reconstruction/audio"),
        players=report(
            f"{R}/reconstruction/players.html",
            caption="../report/reconstruction_audio.rst",
            category="7. Reconstruction",
        ),
        table=f"{R}/reconstruction/notes.tsv",
        summary=report(
            f"{R}/reconstruction/summary.tsv",
            caption="../report/reconstruction.rst",
            category="7. Reconstruction",
        ),
    log:
        f"{LOGS}/reconstruction.log",
    benchmark:
        f"{BENCH}/reconstruction.tsv"
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        features=lambda wildcards: {kind: feature_spec(kind) for kind in KINDS},
        models=lambda wildcards: {
            kind: {
                model: f"{R}/train/{kind}/{model}/weights.safetensors"
                for model in MODELS
            }
            for kind in KINDS
        },
        reconstruction=config["reconstruction"],
        seed=config["seed"],
    script:
        "../scripts/reconstruction.py"
