"""Configuration: defaults from the JSON schema, validation with one-line errors, derived values.

Snakemake's own ``validate`` prints the whole schema on a failure; users need one line that names
the key, the value and what is allowed. :func:`validate_config` gives that, fills in every default
the schema declares, and checks what a schema cannot (cross references, paths).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .io import Pathlike, SoundharvestError

#: The config schema, shipped inside the package (``workflow/schemas/config.schema.yaml`` links to it).
SCHEMA = Path(__file__).resolve().parent / "data" / "config.schema.yaml"
#: The default (offline demo) config, beside the Snakefile.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"


def default_configfile(workdir: Pathlike, cli_configfiles: Any, snakefile_dir: Pathlike) -> str:
    """The config the Snakefile's ``configfile:`` loads.

    The working directory's ``config/config.yaml`` (where a user keeps a copy of the defaults),
    else, when no ``--configfile`` is given either, the one beside the Snakefile: so that
    ``snakemake --directory DIR`` alone runs the default config in ``DIR``.
    """
    local = Path(workdir) / "config" / "config.yaml"
    if local.exists() or cli_configfiles:
        return "config/config.yaml"
    return str(Path(snakefile_dir) / "config" / "config.yaml")


def missing_defaults_hint(message: str, workdir: Pathlike, snakefile_dir: Pathlike) -> str:
    """What to pass when a run lacks the defaults: an overlay given alone in a directory
    without ``config/config.yaml`` misses every required key."""
    if "is a required property" not in message:
        return ""
    if (Path(workdir) / "config" / "config.yaml").exists():
        return ""
    default = Path(snakefile_dir) / "config" / "config.yaml"
    return (
        f" (no config/config.yaml in {Path(workdir).resolve()}: give the defaults before your "
        f"overlay, --configfile {default} yours.yaml)"
    )


def load_schema(path: Pathlike = SCHEMA) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _fill_defaults(instance: Any, schema: dict[str, Any]) -> Any:
    """Recursively insert the schema's ``default`` values for missing object properties."""
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in schema.get("properties", {}):
                    _fill_defaults(value, extra)
    return instance


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _one_line(error) -> str:
    """Turn a jsonschema ValidationError into 'key = value: problem (allowed ...)'."""
    where = _where(error.absolute_path)
    value = json.dumps(error.instance, ensure_ascii=False, default=str)
    if len(value) > 60:
        value = value[:57] + "..."
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"config: {where} = {value} is not allowed; use one of: {allowed}"
    if error.validator == "additionalProperties":
        known = ", ".join(sorted(error.schema.get("properties", {})))
        return f"config: {where}: {error.message}; known keys: {known}"
    if error.validator == "required":
        return f"config: {where}: {error.message}"
    if error.validator == "propertyNames":
        return f"config: {where}: key {value} is not allowed ({error.message})"
    return f"config: {where} = {value}: {error.message}"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/...``) once."""
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema if isinstance(schema, dict) else {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def schema_keys(schema: dict[str, Any], root: dict[str, Any] | None = None) -> set[str]:
    """Every property an object schema names, also inside ``allOf``/``anyOf``/``oneOf``/
    ``if``/``then``/``else`` and local ``$ref`` (a per-type section adds its keys there)."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    keys = set(schema.get("properties", {}))
    for combinator in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(combinator, []) or []:
            keys |= schema_keys(sub, root)
    for branch in ("if", "then", "else"):
        if isinstance(schema.get(branch), dict):
            keys |= schema_keys(schema[branch], root)
    return keys


def model_keys(schema: dict[str, Any]) -> set[str]:
    """The keys a ``models:`` entry may have: the schema's model ``properties``."""
    models = schema.get("properties", {}).get("models", {})
    return schema_keys(_resolve(models.get("additionalProperties", {}), schema), schema)


def _check_model_keys(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """An unknown key in a model entry (``batch_sise: 64``) would train at the default, and a
    key of another model type (``temperature`` on an ``ae``) would be ignored: each is a line
    naming the model and the key."""
    import difflib

    from .hparams import HYPERPARAMETERS, entry_keys

    models = config.get("models")
    if not isinstance(models, dict):
        return  # the schema names that problem
    allowed = model_keys(schema)
    for name, entry in models.items():
        if not isinstance(entry, dict):
            continue
        own = entry_keys(entry["type"]) if entry.get("type") in HYPERPARAMETERS else allowed
        for key in entry:
            if key in own:
                continue
            if key in allowed:
                raise SoundharvestError(
                    f"config: models.{name}: {key!r} is not a setting of model type "
                    f"{entry['type']!r} (remove it); that type takes {', '.join(own)}"
                )
            close = difflib.get_close_matches(str(key), sorted(own), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "remove it"
            raise SoundharvestError(
                f"config: models.{name}: unknown key {key!r} ({hint}); a model entry takes "
                f"{', '.join(sorted(allowed))}"
            )


def _fill_model_defaults(config: dict[str, Any]) -> None:
    """Each model entry's own hyperparameters at their defaults where not given: the defaults
    of its type's class (:mod:`soundharvest.hparams`), written there once."""
    from .hparams import HYPERPARAMETERS, NOT_ENTRY_KEYS

    for entry in (config.get("models") or {}).values():
        if isinstance(entry, dict) and entry.get("type") in HYPERPARAMETERS:
            for key, value in HYPERPARAMETERS[entry["type"]]().to_dict().items():
                if key not in NOT_ENTRY_KEYS:
                    entry.setdefault(key, value)


def validate_config(config: dict[str, Any], schema_path: Pathlike = SCHEMA) -> dict[str, Any]:
    """Return a copy of ``config`` with defaults filled in, or raise a one-line SoundharvestError."""
    import jsonschema

    schema = load_schema(schema_path)
    _check_model_keys(config, schema)
    config = _fill_defaults(copy.deepcopy(dict(config)), schema)
    _fill_model_defaults(config)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise SoundharvestError(_one_line(error))
    _check_semantics(config)
    return config


#: Results per query the YouTube Data API's ``search.list`` pages through at most (about 500:
#: ``nextPageToken`` ends there); the other sources have no such limit.
YOUTUBE_MAX_RESULTS = 500


def _check_relative(key: str, value: str) -> None:
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts or value.startswith("~"):
        raise SoundharvestError(
            f"config: {key} = {value!r}: must be a relative path inside the working directory "
            f"without '..'; to write elsewhere, run there: snakemake --directory DIR "
            f"(the default config beside the Snakefile is used when DIR has no "
            f"config/config.yaml; an overlay goes after it: --configfile {DEFAULT_CONFIG} "
            "yours.yaml)"
        )


def _check_semantics(config: dict[str, Any]) -> None:
    from .architecture import CONTEXT_TYPES, resolve_arch

    _check_relative("results", config["results"])
    _check_relative("downloads", config["downloads"])
    for name, arch in config["architectures"].items():
        try:
            resolve_arch(arch)
        except SoundharvestError as e:
            raise SoundharvestError(f"config: architectures.{name}: {e}") from None
    for name, model in config["models"].items():
        arch = model["architecture"]
        if arch not in config["architectures"]:
            known = ", ".join(config["architectures"])
            raise SoundharvestError(
                f"config: models.{name}.architecture = {arch!r} is not declared under "
                f"architectures (declared: {known})"
            )
        if model["type"] != "random" and "frames" not in model:
            raise SoundharvestError(
                f"config: models.{name}.frames is missing: a trained model needs a budget in frames"
            )
        context = int(config["architectures"][arch].get("context", 1))
        if context > 1 and model["type"] not in CONTEXT_TYPES:
            raise SoundharvestError(
                f"config: models.{name}.type = {model['type']!r} reconstructs single frames, "
                f"architecture {arch!r} has context {context}: use type "
                f"{' or '.join(CONTEXT_TYPES)}, or context: 1"
            )
        if context > 1 and config.get("evaluation", {}).get("pool") == "mean":
            raise SoundharvestError(
                f"config: evaluation.pool = mean averages single-frame codes, model {name} "
                f"takes windows of {context} frames: set evaluation.pool: top"
            )
    search = config["search"]
    n = search["results_per_query"]
    if config["source"] == "youtube" and n > YOUTUBE_MAX_RESULTS:
        raise SoundharvestError(
            f"config: search.results_per_query = {n}: source youtube pages through at most "
            f"{YOUTUBE_MAX_RESULTS} results per query (the Data API stops there); set it to "
            f"{YOUTUBE_MAX_RESULTS} or less and add queries for more, or use source ytsearch"
        )
    if search["min_duration"] >= search["max_duration"]:
        raise SoundharvestError(
            f"config: search.min_duration = {search['min_duration']} must be below "
            f"search.max_duration = {search['max_duration']}"
        )
    if config["source"] == "local" and not search["local"]["root"]:
        raise SoundharvestError(
            "config: search.local.root is empty: set it to a folder with one subfolder per label"
        )
    ds = config["dataset"]
    if ds["balance"] == "cap" and not ds["cap_per_label"]:
        raise SoundharvestError(
            "config: dataset.cap_per_label must be set (frames per label) when dataset.balance = cap"
        )


def source_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options of the configured source (everything that can change what it finds)."""
    opts = dict(config["search"].get(config["source"], {}))
    opts["seed"] = config["seed"]
    return opts


def heard_programs(config: Mapping[str, Any]) -> list[int]:
    """GM programs the configured ``demo`` source plays beyond the built-in ones
    (:func:`soundharvest.synth.training_programs`), e.g. through ``label_programs``: a
    disjoint evaluation set must leave them out too. Empty for every other source."""
    if config["source"] != "demo":
        return []
    from .acquire.demo import DemoSource
    from .synth import training_programs

    return sorted(DemoSource(source_options(config)).programs_used() - training_programs())


def download_store(config: Mapping[str, Any]) -> str:
    """The folder of the configured source's download store, ``<downloads>/<source>``.

    A real video is the same whatever the options that found it, so one store serves every
    config. The ``demo`` source's "videos" are rendered from its options (programs, noise,
    off-topic share, ...) under ids that deliberately do not depend on them (a changed share
    turns some clips off-topic and leaves every other clip as it was): its store is
    ``<downloads>/demo/<hash of the options>``, so a changed option renders afresh instead of
    re-using audio made under other options.
    """
    store = PurePosixPath(config["downloads"], config["source"])
    if config["source"] == "demo":
        store = store / stable_hash(source_options(config))
    return str(store)


def download_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The source's options and the download settings, as the download library reads them.

    The download jobs read these from the config, not as Snakemake parameters: a video in the
    store is never fetched again whatever they say, so a changed option must not re-run the
    download batches and, through them, everything downstream.
    """
    opts = {**source_options(config), **config["download"], "ffmpeg": config["convert"]["ffmpeg"]}
    if opts.pop("archive"):
        opts["download_archive"] = str(PurePosixPath(download_store(config), "archive.txt"))
    return opts


def stable_hash(obj: Any, n: int = 10) -> str:
    """A short stable hash of a JSON-able object (for ids that depend on values)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def model_instances(
    models: Mapping[str, Mapping[str, Any]], seeds: Sequence[int]
) -> dict[str, tuple[str, int]]:
    """The trained model instances: name -> (configured model, training seed).

    One instance per configured model and seed (``train.seeds``, else the run's ``seed``).
    With a single seed an instance keeps its model's name and trains at the model's own
    ``seed`` if it has one; with several it is ``<model>-s<seed>`` (config names cannot contain
    ``-``, so the two never collide). Sorted by model, then seed.
    """
    if len(seeds) == 1:
        return {m: (m, int(models[m].get("seed", seeds[0]))) for m in sorted(models)}
    return {f"{m}-s{int(s)}": (m, int(s)) for m in sorted(models) for s in seeds}
