"""Configuration: defaults from the JSON schema, validation with one-line errors, derived values.

Snakemake's own ``validate`` prints the whole schema on a failure; users need one line that names
the key, the value and what is allowed. :func:`validate_config` gives that, fills in every default
the schema declares, and checks what a schema cannot (cross references, paths).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .io import Pathlike, SoundharvestError

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


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


def validate_config(config: dict[str, Any], schema_path: Pathlike = SCHEMA) -> dict[str, Any]:
    """Return a copy of ``config`` with defaults filled in, or raise a one-line SoundharvestError."""
    import jsonschema

    schema = load_schema(schema_path)
    config = _fill_defaults(copy.deepcopy(dict(config)), schema)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise SoundharvestError(_one_line(error))
    _check_semantics(config)
    return config


def _check_relative(key: str, value: str) -> None:
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts or value.startswith("~"):
        raise SoundharvestError(
            f"config: {key} = {value!r}: must be a relative path inside the working directory "
            "without '..' (use --directory to run elsewhere)"
        )


def _check_semantics(config: dict[str, Any]) -> None:
    from .models import CONTEXT_TYPES, resolve_arch

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


def stable_hash(obj: Any, n: int = 10) -> str:
    """A short stable hash of a JSON-able object (for ids that depend on values)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]
