"""The shipped configurations validate, and bad values fail in one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from soundharvest.config import validate_config
from soundharvest.io import SoundharvestError
from soundharvest.synth import training_programs as synth_training_programs

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = sorted(p for p in (ROOT / "config").glob("*.yaml") if p.name != "config.yaml")
EIGHT = ["brass", "flute", "guitar", "keyboard", "organ", "reed", "string", "vocal"]


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


def test_families8_overlay_renders_every_mapped_family_from_unheard_programs():
    from soundharvest.evaluate.nsynth import eval_notes, families_of, load_label_families
    from soundharvest.synth import training_programs

    config = validate_config(
        merged(*(ROOT / "config" / f for f in ("config.yaml", "best.yaml", "families8.yaml")))
    )
    e = config["eval_set"]
    assert config["results"] == "results-best-families8"
    table = load_label_families(ROOT / "resources" / "label_families.tsv")
    mapped = set(families_of(config["labels"], table).values()) - {None}
    assert sorted(e["families"]) == sorted(mapped) and len(mapped) == 8
    examples = eval_notes(e["families"], e["notes_per_family"], e["programs"], config["seed"])
    assert e["programs"] == "disjoint"
    for family in e["families"]:
        programs = {x["instrument"] for x in examples if x["instrument_family_str"] == family}
        count = sum(x["instrument_family_str"] == family for x in examples)
        assert count == e["notes_per_family"], family
        assert len(programs) >= 3 and not programs & training_programs(), (family, programs)


def test_programs_a_demo_overlay_adds_are_held_out_of_its_disjoint_evaluation_set():
    """config/wide_programs.yaml trains its labels on more GM programs than the built-in table
    (label_programs); the evaluation notes (as rule eval_set renders them, with
    heard_programs) must come from none of them, for 4 and 8 families."""
    from soundharvest.acquire.demo import DemoSource
    from soundharvest.config import heard_programs, source_options
    from soundharvest.evaluate.nsynth import eval_notes

    config = validate_config(
        merged(
            *(ROOT / "config" / f for f in ("config.yaml", "recogniser.yaml", "wide_programs.yaml"))
        )
    )
    heard = DemoSource(source_options(config)).programs_used()
    extra = heard_programs(config)
    assert {26, 27, 17, 74} <= set(extra) and not set(extra) & synth_training_programs()
    for families in (config["eval_set"]["families"], EIGHT):
        examples = eval_notes(families, 120, "disjoint", 0, exclude=extra)
        played = {x["instrument"] for x in examples}
        assert played and not played & heard, sorted(played & heard)
    without = eval_notes(["guitar"], 120, "disjoint", 0)  # what the rule rendered before
    assert {x["instrument"] for x in without} & heard == {26, 27}
    assert heard_programs(merged(ROOT / "config" / "config.yaml")) == []
    assert heard_programs({**config, "source": "local"}) == []


def test_a_demo_store_per_set_of_demo_options():
    """The demo renders its "videos" from its options under ids that do not depend on them: two
    configs whose demo options differ (config/wide_programs.yaml's label_programs, a noise level)
    must not share a store, or the second run re-uses audio rendered for the first."""
    from soundharvest.config import download_store

    default = validate_config(merged(ROOT / "config" / "config.yaml"))
    recogniser = validate_config(
        merged(
            *(ROOT / "config" / f for f in ("config.yaml", "recogniser.yaml", "wide_programs.yaml"))
        )
    )
    noisier = validate_config(merged(ROOT / "config" / "config.yaml"))
    noisier["search"]["demo"]["noise_db"] = [-30.0, -10.0]
    stores = {download_store(c) for c in (default, recogniser, noisier)}
    assert len(stores) == 3 and all(s.startswith("downloads/demo/") for s in stores)
    assert download_store(
        validate_config(merged(ROOT / "config" / "config.yaml"))
    ) == download_store(default)
    more_labels = validate_config(merged(ROOT / "config" / "config.yaml"))
    more_labels["labels"]["banjo"] = ["banjo"]  # what a label finds is the store's business
    assert download_store(more_labels) == download_store(default)
    assert download_store({**default, "source": "youtube"}) == "downloads/youtube"


def test_gmbank_overlay_points_the_evaluation_set_at_sf_gmbank():
    from soundharvest.synth import GMBANK

    config = validate_config(
        merged(*(ROOT / "config" / f for f in ("config.yaml", "best.yaml", "gmbank.yaml")))
    )
    assert config["eval_set"]["soundfont"] == str(GMBANK)
    assert config["results"] == "results-best-gmbank"
    assert validate_config(merged(ROOT / "config" / "config.yaml"))["eval_set"]["soundfont"] == ""


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
    # A key of another model type would be ignored: refused, naming the type's own keys.
    del config["models"]["ae"]["colour"]
    config["models"]["ae"]["temperature"] = 0.2
    with pytest.raises(SoundharvestError) as info:
        validate_config(config)
    message = str(info.value)
    assert "\n" not in message and "models.ae: 'temperature' is not a setting of model" in message
    assert "; that type takes type, architecture, frames" in message
    del config["models"]["ae"]["temperature"]
    # Each entry holds its own type's hyperparameters, at their class's defaults.
    models = validate_config(config)["models"]
    assert models["acai"]["reg"] == 0.2 and "temperature" not in models["acai"]
    assert "advweight" not in models["ae"]


def test_model_keys_come_from_the_schema(tmp_path):
    """A key the schema gains for a new model type is accepted without touching the code."""
    from soundharvest.config import SCHEMA, load_schema, model_keys

    schema = load_schema()
    entry = schema["properties"]["models"]["additionalProperties"]
    entry["properties"]["margin"] = {"type": "string", "enum": ["hinge", "soft"]}
    entry["properties"]["type"]["enum"].append("ranker")
    entry["allOf"] = [{"if": {"properties": {"type": {"const": "ranker"}}},
                       "then": {"properties": {"margin_q": {"type": "number"}}}}]  # fmt: skip
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema), encoding="utf-8")
    assert {"margin", "margin_q"} <= model_keys(load_schema(path))
    assert "margin" not in model_keys(load_schema(SCHEMA))
    assert {"loss", "gce_q"} <= model_keys(load_schema(SCHEMA))  # the classifier's, shipped
    config = merged(ROOT / "config" / "config.yaml")
    config["models"]["rnk"] = {
        "type": "ranker", "architecture": "thesis", "frames": 10, "margin": "soft", "margin_q": 0.7
    }  # fmt: skip
    assert validate_config(config, path)["models"]["rnk"]["margin"] == "soft"
    config["models"]["rnk"]["margin_qq"] = 0.7
    with pytest.raises(SoundharvestError, match=r"models\.rnk: .*'margin_qq'.*'margin_q'"):
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


def test_results_per_query_above_500_only_fails_for_the_youtube_api():
    base = merged(ROOT / "config" / "config.yaml")
    # demo, local and ytsearch (yt-dlp's search has no cap of its own) take any number.
    for source in ("demo", "local", "ytsearch"):
        config = {**base, "source": source}
        config["search"] = {**base.get("search", {}), "results_per_query": 2000}
        config["search"]["local"] = {"root": "library"}
        assert validate_config(config)["search"]["results_per_query"] == 2000, source
    youtube = {**base, "source": "youtube", "search": {"results_per_query": 500}}
    assert validate_config(youtube)["search"]["results_per_query"] == 500
    youtube["search"] = {"results_per_query": 501}
    with pytest.raises(SoundharvestError) as e:
        validate_config(youtube)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("config: search.results_per_query = 501: source youtube")
    assert "set it to 500 or less" in msg


def test_model_instances_one_per_model_and_seed():
    from soundharvest.config import model_instances

    models = {"acai": {"seed": 7}, "ae": {}}
    assert model_instances(models, [3]) == {"acai": ("acai", 7), "ae": ("ae", 3)}
    assert model_instances(models, [1, 2]) == {
        "acai-s1": ("acai", 1), "acai-s2": ("acai", 2), "ae-s1": ("ae", 1), "ae-s2": ("ae", 2)
    }  # fmt: skip
