# Acquisition: search -> download -> convert -> catalog.


rule search:
    output:
        f"{R}/search/{{label}}/{{query_id}}.tsv",
    log:
        f"{LOGS}/search/{{label}}/{{query_id}}.log",
    conda:
        "../../envs/acquire.yaml"
    params:
        search=search_params,
    script:
        "../scripts/search.py"


# The one checkpoint: a label's merged candidates decide which videos exist downstream. Its
# inputs are every search table (the cross-label rule needs them all), so a new or changed query
# re-runs the merges, and only the labels whose list of videos changed re-run further.
checkpoint candidates:
    input:
        search=search_paths(),
    output:
        f"{R}/candidates/{{label}}.tsv",
    log:
        f"{LOGS}/candidates/{{label}}.log",
    conda:
        "../../envs/acquire.yaml"
    params:
        cross_label=config["search"]["cross_label"],
    script:
        "../scripts/candidates.py"


rule download:
    output:
        f"{D}/{SOURCE}/{{video_id}}.status.json",
    log:
        f"{LOGS}/download/{{video_id}}.log",
    conda:
        "../../envs/acquire.yaml"
    resources:
        downloads=1,
    params:
        source=SOURCE,
        options=lambda wildcards: download_options(),
        candidate=lambda wildcards: candidate_of(wildcards.video_id),
        store=lambda wildcards: f"{D}/{SOURCE}/{wildcards.video_id}",
    script:
        "../scripts/download.py"


rule convert:
    input:
        ancient(f"{D}/{SOURCE}/{{video_id}}.status.json"),
    output:
        wav=f"{R}/convert/{{video_id}}.wav",
        status=f"{R}/convert/{{video_id}}.json",
    log:
        f"{LOGS}/convert/{{video_id}}.log",
    benchmark:
        f"{BENCH}/convert/{{video_id}}.tsv"
    conda:
        "../../envs/acquire.yaml"
    params:
        convert=config["convert"],
    script:
        "../scripts/convert.py"


rule catalog:
    input:
        search=search_paths(),
        status=lambda wildcards: expand(
            f"{R}/convert/{{video_id}}.json", video_id=downloadable_ids()
        ),
    output:
        report(
            f"{R}/catalog.csv",
            caption="../report/catalog.rst",
            category="1. Acquisition",
        ),
    log:
        f"{LOGS}/catalog.log",
    conda:
        "../../envs/acquire.yaml"
    params:
        cross_label=config["search"]["cross_label"],
    script:
        "../scripts/catalog.py"
