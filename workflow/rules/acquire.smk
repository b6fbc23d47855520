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


# The per-video stages run one job per batch of a label's videos (soundharvest.batch): each
# video keeps its own files and stamp, and a batch that runs again redoes only the videos whose
# stamp no longer matches. A job's declared output is its manifest, written last. The download
# manifests live in the store, beside what they record, so that deleting results/ fetches
# nothing and rewrites nothing there (a batch's name holds a hash of its videos: two configs
# sharing a store share a manifest only for the same videos).
rule download:
    output:
        f"{STORE}/batches/{{batch}}.tsv",
    log:
        f"{LOGS}/download/{{batch}}.log",
    conda:
        "../../envs/acquire.yaml"
    resources:
        downloads=1,
    params:
        source=SOURCE,
        candidates=batch_candidates,
        store=lambda wildcards, output: str(Path(output[0]).parents[1]),
    script:
        "../scripts/download.py"


# A download batch runs again only when its manifest is missing or it is forced (retrying
# failed downloads: `--forcerun download`); its options are read from the config, not passed
# as parameters, since the store is re-used whatever they say. Then its conversion runs again,
# redoing only the videos whose download changed.
rule convert:
    input:
        f"{STORE}/batches/{{batch}}.tsv",
    output:
        f"{BATCHES}/convert/{{batch}}.tsv",
    log:
        f"{LOGS}/convert/{{batch}}.log",
    benchmark:
        f"{BENCH}/convert/{{batch}}.tsv"
    conda:
        "../../envs/acquire.yaml"
    params:
        convert=config["convert"],
        videos=batch_videos,
        downloads=lambda wildcards, input: str(Path(input[0]).parents[1]),
        out=f"{R}/convert",
    script:
        "../scripts/convert.py"


rule catalog:
    input:
        search=search_paths(),
        batches=lambda wildcards: batch_manifests("convert"),
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
        statuses=lambda wildcards: {
            vid: f"{R}/convert/{vid}.json" for vid in downloadable_ids()
        },
    script:
        "../scripts/catalog.py"
