# Report: the first screen of `snakemake --report` (workflow/report/workflow.rst includes it).


rule overview:
    input:
        summary=f"{R}/summary.tsv",
        by_model=f"{R}/summary_by_model.tsv",
        confusion=expand(
            f"{R}/figures/{{kind}}/{{model}}.confusion.png",
            kind=KINDS,
            model=PREDICTORS,
        ),
    output:
        f"{R}/report/overview.html",
    log:
        f"{LOGS}/overview.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        pairs=[[kind, model] for kind in KINDS for model in PREDICTORS],
    script:
        "../scripts/overview.py"
