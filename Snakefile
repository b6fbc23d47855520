# soundharvest: from instrument search queries to a trained self-supervised model and an honest
# evaluation of its latent space. Layout of what it writes (under config["results"]):
#   search/<label>/<query_id>.tsv      ranked candidates per query
#   candidates/<label>.tsv             a label's merged candidates (the one checkpoint)
#   catalog.csv                        every candidate: status (ok / failed / skipped) and reason
#   convert/<video_id>.wav|.json       16 kHz mono wav and its status
#   spectrogram/<kind>/<video_id>.npy  frames x bins in [0, 1], + .energy.npy
#   concatenate/<kind>/<label>.npy     all of a label's frames, + .index.tsv
#   shuffle/<kind>/shard-NN.npy        shuffled shards, + .labels.npy, .rows.npy
#   train/<kind>/<model>/              weights, curves
#   eval_frames, embed, kmeans, elbow, figures, summary.tsv
# Downloads live apart, under config["downloads"], so that deleting results never re-fetches.

from snakemake.utils import min_version

from soundharvest.config import default_configfile

min_version("9.0")


# The working directory's config/config.yaml, else (with no --configfile) the one beside this
# Snakefile: `snakemake --directory DIR` alone runs the default config in DIR.
configfile: default_configfile(".", workflow.overwrite_configfiles, workflow.basedir)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    label="|".join(LABELS),
    kind="|".join(KINDS),
    model="|".join(MODELS + BASELINES),
    trained_model="|".join(MODELS),
    batch="[a-z][a-z0-9_]*-[0-9][0-9][0-9]+-[0-9a-f]+",
    query_id="q-[0-9a-f]+",


include: "workflow/rules/acquire.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
