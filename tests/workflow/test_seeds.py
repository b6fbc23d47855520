"""Training seeds in a real Snakemake run: a copy of the tiny run trained once per seed.

Its own file (not test_workflow.py) so that pytest-xdist's ``--dist loadfile`` runs it beside
test_workflow.py's other tests once the shared tiny run exists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from wfutil import snakemake, write_config

pytestmark = pytest.mark.workflow


def test_training_seeds_give_one_model_per_seed_and_a_spread(tiny_copy):
    """Two training seeds, and notes pooled over their loud frames (evaluation.pool: mean)."""
    config = yaml.safe_load((tiny_copy / "config.yaml").read_text())
    config["features"]["kinds"] = ["stft"]
    config["models"] = {"ae": config["models"]["ae"]}
    config["train"]["seeds"] = [3, 4]
    config["evaluation"]["pool"] = "mean"
    write_config(tiny_copy, config)
    snakemake(tiny_copy, "results/summary_by_model.tsv")
    ev = tiny_copy / "results" / "eval_frames"
    loud, note_of = np.load(ev / "stft.loud.npy"), np.load(ev / "stft.loud_note.npy")
    raw = np.load(tiny_copy / "results" / "embed" / "stft" / "raw.npy")
    assert len(loud) > len(raw)  # several loud frames per note
    assert np.allclose(raw[0], loud[note_of == 0].mean(0), atol=1e-5)
    train = tiny_copy / "results" / "train" / "stft"
    weights = {m: (train / m / "weights.safetensors").read_bytes() for m in ("ae-s3", "ae-s4")}
    assert weights["ae-s3"] != weights["ae-s4"]  # the seed reached the training
    summary = pd.read_csv(tiny_copy / "results" / "summary.tsv", sep="\t")
    rows = summary.set_index("model")
    assert set(rows.index) == {"ae-s3", "ae-s4", "raw", "pca"}
    assert rows.loc["ae-s4", "base_model"] == "ae" and rows.loc["ae-s4", "seed"] == 4
    by = pd.read_csv(tiny_copy / "results" / "summary_by_model.tsv", sep="\t").set_index("model")
    assert by.loc["ae", "n_seeds"] == 2 and by.loc["raw", "n_seeds"] == 0
    assert set(by["supervision"]) == {"none"}  # no model here uses the query labels
    both = rows.loc[["ae-s3", "ae-s4"], "nmi@k=2"]
    assert by.loc["ae", "nmi@k=2"] == pytest.approx(both.mean(), abs=1e-4)
    assert by.loc["ae", "nmi@k=2_std"] == pytest.approx(both.std(ddof=1), abs=1e-4)
    assert by.loc["ae", "accuracy"] == pytest.approx(
        rows.loc[["ae-s3", "ae-s4"], "accuracy"].mean(), abs=1e-4
    )
