import sys
from pathlib import Path

from soundharvest.batch import assign_batches
from soundharvest.config import (
    download_store,
    heard_programs,
    missing_defaults_hint,
    model_instances,
    validate_config,
)
from soundharvest.config import source_options as _source_options
from soundharvest.io import SoundharvestError

# Validate before any job runs: one line naming the key, the value and what is allowed.
try:
    _validated = validate_config(config)
except SoundharvestError as e:
    hint = missing_defaults_hint(str(e), Path.cwd(), workflow.basedir)
    sys.stderr.write(f"soundharvest: {e}{hint}\n")
    sys.exit(1)
config.clear()
config.update(_validated)

R = config["results"]
D = config["downloads"]
# The source's download store (the demo's depends on its options: config.download_store).
STORE = download_store(config)
SOURCE = config["source"]
LABELS = sorted(config["labels"])
KINDS = config["features"]["kinds"]
# Training seeds: one model instance per configured model and seed (soundharvest.config.
# model_instances: "<model>-s<seed>" with several seeds, the model's name with one).
SEEDS = config["train"]["seeds"] or [config["seed"]]
INSTANCES = model_instances(config["models"], SEEDS)
MODELS = list(INSTANCES)
# Baselines embedded beside the models: the raw features and their PCA to the latent size.
BASELINES = ["raw", "pca"]
# What gets a cluster -> label model: every model, and the raw features (PCA is fitted on the
# evaluation notes themselves, so it has no training codes to name clusters with).
PREDICTORS = MODELS + ["raw"]
# Job logs and benchmark TSVs: logs/ and benchmarks/ for the default results directory; a
# config with its own `results` (e.g. results-best) gets its own subdirectory of each, so two
# configs run in one working directory never overwrite each other's logs and timings.
_RUN = "" if Path(R) == Path("results") else Path(R).name
LOGS = str(Path("logs", _RUN))
BENCH = str(Path("benchmarks", _RUN))
# Static inputs shipped with the workflow (found from the Snakefile, whatever the working dir).
RESOURCES = Path(workflow.basedir) / "resources"


# ---------------------------------------------------------------- acquisition helpers


from functools import lru_cache

from soundharvest.acquire import search as _search

# label -> {query_id: query text}. Files are named by the safe id, never by the raw text.
QUERIES = {
    label: {_search.query_id(q): q for q in queries}
    for label, queries in config["labels"].items()
}


def source_options():
    """The options of the configured source (everything that can change what it finds)."""
    return _source_options(config)


def search_params(wildcards):
    return {
        "source": SOURCE,
        "options": source_options(),
        "label": wildcards.label,
        "query": QUERIES[wildcards.label][wildcards.query_id],
        "n_results": config["search"]["results_per_query"],
        "min_duration": config["search"]["min_duration"],
        "max_duration": config["search"]["max_duration"],
    }


def search_paths(label=None):
    """The search tables (of one label, or of all), by path: they are plain inputs, so the
    searches are known at once, run in parallel, and a changed query re-runs its search.
    """
    labels = [label] if label else LABELS
    return [
        f"{R}/search/{lab}/{qid}.tsv" for lab in labels for qid in sorted(QUERIES[lab])
    ]


@lru_cache(maxsize=64)
def _read_candidates(path, mtime_ns):
    return _search.read_search_table(path)


def label_candidates(label, checkpoint=True):
    """A label's merged candidates (one row per video, cross-label rule applied).

    Through the ``candidates`` checkpoint by default; ``checkpoint=False`` reads the file by
    path, for a job that runs after it in a Snakemake of its own (a cluster job)."""
    if checkpoint:
        path = checkpoints.candidates.get(label=label).output[0]
    else:
        path = f"{R}/candidates/{label}.tsv"
    return _read_candidates(path, Path(path).stat().st_mtime_ns)


def training_ids(label, checkpoint=True):
    """The videos whose frames are the label's training data, best rank first."""
    rows = label_candidates(label, checkpoint)
    return list(rows.loc[rows["status"] == "ok", "video_id"])


def downloadable_ids():
    """Every video that some label may use, once (a video found by two labels is one unit)."""
    return sorted({vid for label in LABELS for vid in training_ids(label)})


# The per-video stages run one job per batch of videos (soundharvest.batch): each label's
# videos, in id order, cut into batches of `batch.videos`, named "<label>-000-<hash>", ...
BATCH_SIZE = config["batch"]["videos"]
BATCHES = f"{R}/batches"


def video_batches(checkpoint=True):
    """batch name ("<label>-000-<hash of its videos>") -> its video ids (a video of two labels
    belongs to the first label's). Through the checkpoints for the inputs that decide which
    batches exist; ``checkpoint=False`` reads the candidates by path, for a batch job's own
    parameters (the batch exists only once they are written)."""
    ids = {label: training_ids(label, checkpoint) for label in LABELS}
    return assign_batches(ids, BATCH_SIZE)


def batch_videos(wildcards):
    """The videos of one batch job."""
    batches = video_batches(checkpoint=False)
    if wildcards.batch not in batches:
        raise ValueError(
            f"batch {wildcards.batch} is not one of this config's batches (its videos changed "
            "since it was named); run the workflow's targets, not an old batch"
        )
    return batches[wildcards.batch]


def label_batches(label):
    """The batches holding a label's training videos."""
    mine = set(training_ids(label))
    return [b for b, ids in video_batches().items() if mine.intersection(ids)]


def batch_manifests(stage, label=None, kind=None):
    """The manifests of a stage's batches (of one label's videos, or of all)."""
    names = label_batches(label) if label else list(video_batches())
    folder = Path(BATCHES, stage, kind or "")
    return [str(folder / f"{b}.tsv") for b in names]


def batch_candidates(wildcards):
    """What the download needs to know of each video of a batch: only what identifies it, so
    that a new rank or another query finding it does not change the job's parameters."""
    keys = ("video_id", "url", "title", "channel", "duration", "label")
    wanted = set(batch_videos(wildcards))
    found = {}
    for label in LABELS:
        rows = label_candidates(label, checkpoint=False)
        for row in rows[rows["video_id"].isin(wanted)].to_dict("records"):
            found.setdefault(row["video_id"], {k: str(row[k]) for k in keys})
    return [found[vid] for vid in batch_videos(wildcards)]


# ---------------------------------------------------------------- features helpers

from soundharvest.features import n_bins
from soundharvest.architecture import context_span
from soundharvest.hparams import supervision


def feature_params(kind):
    """The parameters of one feature kind."""
    return dict(config["features"][kind])


def feature_spec(kind):
    """Everything that defines a kind's features: a model carries this to compute them anew."""
    return {
        "kind": kind,
        "params": feature_params(kind),
        "sample_rate": config["convert"]["sample_rate"],
    }


# ---------------------------------------------------------------- training helpers


def base_model(model):
    """The configured model an instance belongs to ("acai-s1" -> "acai")."""
    return INSTANCES[model][0]


def model_params(model):
    """A model instance's settings, with the instance's training seed."""
    return {**config["models"][base_model(model)], "seed": INSTANCES[model][1]}


def positive_sources(wildcards):
    """A contrastive model draws its positive pairs from the per-label frames (time-adjacent
    frames of one clip), in the order the shuffle read them, and a classifier its windows and
    their clips' labels; other models need none."""
    model_type = config["models"][base_model(wildcards.trained_model)]["type"]
    if model_type not in ("contrastive", "classifier"):
        return []
    return [f"{R}/concatenate/{wildcards.kind}/{label}.npy" for label in LABELS]


def architecture_of(model):
    return config["architectures"][config["models"][base_model(model)]["architecture"]]


def model_context(model):
    """(frames per datapoint, stride) of a model instance; (1, 1) for single frames and for
    the baselines."""
    if model in BASELINES:
        return 1, 1
    arch = architecture_of(model)
    return int(arch.get("context", 1)), int(arch.get("context_stride", 1))


def context_windows(wildcards):
    """embed's input for a model with context: the notes' windows of its span (eval_windows)."""
    t, stride = model_context(wildcards.model)
    if t == 1:
        return {}
    span = context_span(t, stride)
    return {"windows": f"{R}/eval_frames/{wildcards.kind}.window{span}.npy"}


# ---------------------------------------------------------------- evaluation helpers


def eval_set_dir():
    """The user's NSynth-format directory, or the one the workflow renders."""
    return config["eval_set"]["path"] or f"{R}/eval_set"


def pooled_frames():
    """With `evaluation.pool: mean`, the loud frames of every note and their note index (the
    eval_frames outputs that embed averages codes over); nothing with the thesis' `top`.
    """
    if config["evaluation"]["pool"] != "mean":
        return {}
    return {
        "loud": f"{R}/eval_frames/{{kind}}.loud.npy",
        "loud_note": f"{R}/eval_frames/{{kind}}.loud_note.npy",
    }


def probe_seed():
    """The linear probe's fold seed: `probe.seed`, else the run's `seed`."""
    seed = config["probe"]["seed"]
    return config["seed"] if seed is None else seed


def model_weights(wildcards):
    if wildcards.model in BASELINES:
        return []
    return f"{R}/train/{wildcards.kind}/{wildcards.model}/weights.safetensors"


def baseline_dim():
    """PCA baselines reduce to the latent size of the first model's architecture."""
    return architecture_of(MODELS[0])["latent"]


def k_chunks():
    """(start, stop) of each k-means job: k = 2 .. max(max_k), k_chunk ks per job."""
    top = max(config["evaluation"]["max_k"])
    step = config["evaluation"]["k_chunk"]
    return [(a, min(a + step - 1, top)) for a in range(2, top + 1, step)]


def sweep_chunks(wildcards):
    return [
        f"{R}/kmeans/{wildcards.kind}/{wildcards.model}/k{a}-{b}.tsv"
        for a, b in k_chunks()
    ]


def get_final_output():
    """What a plain `snakemake` builds: the catalog, the summary and every figure."""
    out = [f"{R}/catalog.csv", f"{R}/summary.tsv", f"{R}/reconstruction/summary.tsv"]
    out.append(f"{R}/report/overview.html")  # the report's first screen
    evaluation = config["evaluation"]
    for kind in KINDS:
        out.append(f"{R}/figures/{kind}/metrics_vs_k.png")
        for model in MODELS:
            out.append(f"{R}/train/{kind}/{model}/curves.png")
        for model in PREDICTORS:
            out.append(f"{R}/figures/{kind}/{model}.confusion.png")
            out.append(f"{R}/label_noise/{kind}/{model}.queries.tsv")
            if SOURCE == "demo":
                out.append(f"{R}/label_noise/{kind}/{model}.truth.tsv")
        for model in MODELS + BASELINES:
            out.append(f"{R}/figures/{kind}/{model}.inertia.png")
            out += [
                f"{R}/figures/{kind}/{model}.{m}.png" for m in evaluation["projections"]
            ]
    return out
