"""The shipped configurations validate, and bad values fail in one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from soundharvest.config import validate_config
from soundharvest.io import SoundharvestError

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = sorted(p for p in (ROOT / "config").glob("*.yaml") if p.name != "config.yaml")


def merged(*paths: Path) -> dict:
    """Snakemake's merge of --configfile overlays on the Snakefile's configfile."""

    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                update(base[key], value)
            else:
                base[key] = value
        return base

    out: dict = {}
    for p in paths:
        update(out, yaml.safe_load(p.read_text()) or {})
    return out


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_shipped_overlays_validate(overlay):
    config = validate_config(merged(ROOT / "config" / "config.yaml", overlay))
    assert config["models"], overlay


def test_logconv_architecture_errors_name_the_key():
    config = merged(ROOT / "config" / "config.yaml")
    config["architectures"]["conv"] = {
        "frontend": "logconv", "hidden": [16], "latent": 4, "channels": [8, 0],
    }  # fmt: skip
    with pytest.raises(SoundharvestError, match=r"architectures\.conv\.channels"):
        validate_config(config)  # the schema's check
    config["architectures"]["conv"] = {"frontend": "logconv", "hidden": [16], "latent": 4}
    config["architectures"]["conv"]["fmax"] = 40.0  # below the default fmin (60 Hz)
    with pytest.raises(SoundharvestError, match=r"architectures\.conv: architecture\.fmax"):
        validate_config(config)  # the library's check, run at validation time
    config["architectures"]["conv"]["fmax"] = None
    config["architectures"]["conv"]["fmin"] = 50.0
    assert validate_config(config)["architectures"]["conv"]["fmin"] == 50.0


def test_context_architecture_needs_a_window_model_and_top_pooling():
    config = merged(ROOT / "config" / "config.yaml")
    config["architectures"]["win"] = {
        "frontend": "logconv", "hidden": [16], "latent": 4, "context": 4, "context_stride": 2,
    }  # fmt: skip
    config["models"]["ctx"] = {"type": "contrastive", "architecture": "win", "frames": 100}
    assert validate_config(config)["architectures"]["win"]["context"] == 4
    config["models"]["bad"] = {"type": "ae", "architecture": "win", "frames": 100}
    with pytest.raises(SoundharvestError, match=r"models\.bad\.type = 'ae'.*context: 1"):
        validate_config(config)
    del config["models"]["bad"]
    config["evaluation"]["pool"] = "mean"
    with pytest.raises(SoundharvestError, match=r"evaluation\.pool: top"):
        validate_config(config)
    config["evaluation"]["pool"] = "top"
    config["architectures"]["mlp"] = {"hidden": [16], "latent": 4, "context": 4}
    with pytest.raises(SoundharvestError, match=r"architectures\.mlp.*context"):
        validate_config(config)  # single frames only through the thesis' MLP


def test_a_typo_in_a_model_entry_names_the_model_the_key_and_the_fix():
    config = merged(ROOT / "config" / "config.yaml")
    config["models"]["acai"]["batch_sise"] = 64
    with pytest.raises(SoundharvestError) as info:
        validate_config(config)
    message = str(info.value)
    assert "\n" not in message
    assert "models.acai" in message and "'batch_sise'" in message
    assert "did you mean 'batch_size'?" in message
    del config["models"]["acai"]["batch_sise"]
    config["models"]["ae"]["colour"] = "blue"  # nothing close: the allowed keys are listed
    with pytest.raises(SoundharvestError, match=r"models\.ae: unknown key 'colour' \(remove it\)"):
        validate_config(config)


def test_model_keys_come_from_the_schema(tmp_path):
    """A key the schema gains for a new model type is accepted without touching the code."""
    from soundharvest.config import SCHEMA, load_schema, model_keys

    schema = load_schema()
    entry = schema["properties"]["models"]["additionalProperties"]
    entry["properties"]["loss"] = {"type": "string", "enum": ["ce", "gce"]}
    entry["properties"]["type"]["enum"].append("classifier")
    entry["allOf"] = [{"if": {"properties": {"type": {"const": "classifier"}}},
                       "then": {"properties": {"gce_q": {"type": "number"}}}}]  # fmt: skip
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema), encoding="utf-8")
    assert {"loss", "gce_q"} <= model_keys(load_schema(path))
    assert "loss" not in model_keys(load_schema(SCHEMA))
    config = merged(ROOT / "config" / "config.yaml")
    config["models"]["clf"] = {
        "type": "classifier", "architecture": "thesis", "frames": 10, "loss": "gce", "gce_q": 0.7
    }  # fmt: skip
    assert validate_config(config, path)["models"]["clf"]["loss"] == "gce"
    config["models"]["clf"]["gce_qq"] = 0.7
    with pytest.raises(SoundharvestError, match=r"models\.clf: .*'gce_qq'.*'gce_q'"):
        validate_config(config, path)


def test_an_absolute_results_path_says_what_to_run_instead():
    config = merged(ROOT / "config" / "config.yaml")
    config["results"] = "/tmp/elsewhere"
    with pytest.raises(SoundharvestError) as info:
        validate_config(config)
    message = str(info.value)
    assert "\n" not in message and "config: results = '/tmp/elsewhere'" in message
    assert (
        "--directory DIR" in message
        and f"--configfile {ROOT / 'config' / 'config.yaml'}" in message
    )
