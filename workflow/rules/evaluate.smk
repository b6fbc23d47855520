# Evaluation: labelled notes -> their highest-energy frames -> latent codes -> k sweeps -> elbows,
# figures and the summary table.


rule eval_set:
    output:
        directory(f"{R}/eval_set"),
    log:
        f"{LOGS}/eval_set.log",
    benchmark:
        f"{BENCH}/eval_set.tsv"
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        eval_set=config["eval_set"],
        seed=config["seed"],
        # Programs the demo source plays beyond its built-in ones (label_programs): a disjoint
        # set leaves them out as well.
        exclude=heard_programs(config),
    script:
        "../scripts/eval_set.py"


rule eval_frames:
    input:
        eval_set_dir(),
    output:
        **pooled_frames(),
        frames=f"{R}/eval_frames/{{kind}}.npy",
        notes=f"{R}/eval_frames/{{kind}}.notes.tsv",
    log:
        f"{LOGS}/eval_frames/{{kind}}.log",
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        features=lambda wildcards: feature_spec(wildcards.kind),
        families=config["eval_set"]["families"],
        loud_db=config["evaluation"]["loud_db"],
    script:
        "../scripts/eval_frames.py"


rule eval_windows:
    input:
        eval_set=eval_set_dir(),
        notes=f"{R}/eval_frames/{{kind}}.notes.tsv",
    output:
        f"{R}/eval_frames/{{kind}}.window{{span}}.npy",
    log:
        f"{LOGS}/eval_windows/{{kind}}.window{{span}}.log",
    wildcard_constraints:
        span=r"\d+",
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        features=lambda wildcards: feature_spec(wildcards.kind),
        span=lambda wildcards: int(wildcards.span),
    script:
        "../scripts/eval_windows.py"


rule embed:
    input:
        unpack(context_windows),
        **pooled_frames(),
        frames=f"{R}/eval_frames/{{kind}}.npy",
        weights=lambda wildcards: model_weights(wildcards),
    output:
        f"{R}/embed/{{kind}}/{{model}}.npy",
    log:
        f"{LOGS}/embed/{{kind}}/{{model}}.log",
    conda:
        "../../envs/evaluate.yaml"
    threads: config["encode"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=config["encode"]["gpu"],
        gpu_model=config["encode"]["gpu_model"] or None,
    params:
        model=lambda wildcards: wildcards.model,
        latent=lambda wildcards: baseline_dim(),
        seed=config["seed"],
    script:
        "../scripts/embed.py"


rule kmeans_sweep:
    input:
        codes=f"{R}/embed/{{kind}}/{{model}}.npy",
        notes=f"{R}/eval_frames/{{kind}}.notes.tsv",
    output:
        f"{R}/kmeans/{{kind}}/{{model}}/k{{start}}-{{stop}}.tsv",
    log:
        f"{LOGS}/kmeans/{{kind}}/{{model}}/k{{start}}-{{stop}}.log",
    benchmark:
        f"{BENCH}/kmeans/{{kind}}/{{model}}/k{{start}}-{{stop}}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        ks=lambda wildcards: [int(wildcards.start), int(wildcards.stop)],
        labelings=config["evaluation"]["labelings"],
        n_init=config["evaluation"]["n_init"],
        seed=config["seed"],
    script:
        "../scripts/kmeans_sweep.py"


rule elbow:
    input:
        chunks=lambda wildcards: sweep_chunks(wildcards),
    output:
        sweep=f"{R}/kmeans/{{kind}}/{{model}}.sweep.tsv",
        elbows=report(
            f"{R}/elbow/{{kind}}/{{model}}.tsv",
            caption="../report/elbow.rst",
            category="3. Clustering",
            subcategory="{kind}",
            labels={"model": "{model}", "table": "elbow vs max_k"},
        ),
        figure=report(
            f"{R}/figures/{{kind}}/{{model}}.inertia.png",
            caption="../report/inertia.rst",
            category="3. Clustering",
            subcategory="{kind}",
            labels={"model": "{model}", "figure": "inertia"},
        ),
        elbow_figure=report(
            f"{R}/figures/{{kind}}/{{model}}.elbow_vs_max_k.png",
            caption="../report/elbow_vs_max_k.rst",
            category="3. Clustering",
            subcategory="{kind}",
            labels={"model": "{model}", "figure": "elbow vs max_k"},
        ),
    log:
        f"{LOGS}/elbow/{{kind}}/{{model}}.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        max_k=config["evaluation"]["max_k"],
        labelings=config["evaluation"]["labelings"],
        title=lambda wildcards: f"{wildcards.model} ({wildcards.kind})",
    script:
        "../scripts/elbow.py"


rule probe:
    input:
        codes=f"{R}/embed/{{kind}}/{{model}}.npy",
        notes=f"{R}/eval_frames/{{kind}}.notes.tsv",
    output:
        f"{R}/probe/{{kind}}/{{model}}.tsv",
    log:
        f"{LOGS}/probe/{{kind}}/{{model}}.log",
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        kind=lambda wildcards: wildcards.kind,
        model=lambda wildcards: wildcards.model,
        folds=config["probe"]["folds"],
        seed=probe_seed(),
        C=config["probe"]["C"],
        max_iter=config["probe"]["max_iter"],
    script:
        "../scripts/probe.py"


rule metrics_figure:
    input:
        sweeps=expand(
            f"{R}/kmeans/{{{{kind}}}}/{{model}}.sweep.tsv", model=MODELS + BASELINES
        ),
    output:
        report(
            f"{R}/figures/{{kind}}/metrics_vs_k.png",
            caption="../report/metrics_vs_k.rst",
            category="3. Clustering",
            subcategory="{kind}",
            labels={"model": "all", "figure": "metrics vs k"},
        ),
    log:
        f"{LOGS}/metrics_figure/{{kind}}.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        models=MODELS + BASELINES,
        labeling="family",
    script:
        "../scripts/metrics_figure.py"


rule projection:
    input:
        codes=f"{R}/embed/{{kind}}/{{model}}.npy",
        notes=f"{R}/eval_frames/{{kind}}.notes.tsv",
    output:
        report(
            f"{R}/figures/{{kind}}/{{model}}.{{method}}.png",
            caption="../report/projection.rst",
            category="4. Latent spaces",
            subcategory="{kind}",
            labels={"model": "{model}", "projection": "{method}"},
        ),
    log:
        f"{LOGS}/projection/{{kind}}/{{model}}.{{method}}.log",
    wildcard_constraints:
        method="pca|tsne|umap",
    conda:
        "../../envs/evaluate.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        method=lambda wildcards: wildcards.method,
        seed=config["seed"],
    script:
        "../scripts/projection.py"


rule summary:
    input:
        sweeps=expand(
            f"{R}/kmeans/{{kind}}/{{model}}.sweep.tsv",
            kind=KINDS,
            model=MODELS + BASELINES,
        ),
        elbows=expand(
            f"{R}/elbow/{{kind}}/{{model}}.tsv", kind=KINDS, model=MODELS + BASELINES
        ),
        scores=expand(
            f"{R}/scores/{{kind}}/{{model}}.tsv", kind=KINDS, model=PREDICTORS
        ),
        probes=expand(
            f"{R}/probe/{{kind}}/{{model}}.tsv", kind=KINDS, model=MODELS + BASELINES
        ),
    output:
        summary=report(
            f"{R}/summary.tsv",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
        by_model=report(
            f"{R}/summary_by_model.tsv",
            caption="../report/summary_by_model.rst",
            category="0. Summary",
        ),
    log:
        f"{LOGS}/summary.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        kinds=KINDS,
        models=MODELS + BASELINES,
        n_families=len(config["eval_set"]["families"]),
        max_k=config["evaluation"]["max_k"],
        instances=INSTANCES,
        supervision={m: supervision(model_params(m)) for m in MODELS},
    script:
        "../scripts/summary.py"
