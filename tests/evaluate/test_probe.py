"""The linear probe: right on separable codes, at chance on shuffled labels, and fitted (its
standardisation included) on the training folds only."""

import numpy as np
import pandas as pd
import pytest

from soundharvest.evaluate import probe
from soundharvest.evaluate.probe import linear_probe, probe_file
from soundharvest.io import SoundharvestError, save_npy, write_tsv


def _blobs(n_per_class=40, n_classes=4, dim=10, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(n_classes, dim))
    codes = np.concatenate([c + spread * rng.standard_normal((n_per_class, dim)) for c in centres])
    labels = np.repeat([f"family{i}" for i in range(n_classes)], n_per_class)
    return codes, labels


def test_separable_codes_score_one():
    codes, labels = _blobs()
    # Scales that differ by orders of magnitude per dimension: the standardisation handles them.
    codes = codes * np.logspace(-3, 3, codes.shape[1])
    out = linear_probe(codes, labels, folds=5, seed=0)
    assert out["accuracy"] == pytest.approx(1.0)
    assert out["balanced_accuracy"] == pytest.approx(1.0)
    assert out["accuracy_fold_std"] == pytest.approx(0.0)
    assert out["n_classes"] == 4 and out["converged"]
    assert list(out["predictions"]) == list(labels)


def test_shuffled_labels_score_chance():
    codes, labels = _blobs(n_per_class=100, n_classes=4)
    shuffled = np.random.default_rng(1).permutation(labels)
    out = linear_probe(codes, shuffled, folds=5, seed=0)
    assert out["balanced_accuracy"] == pytest.approx(1 / 4, abs=0.08)
    assert out["accuracy"] == pytest.approx(1 / 4, abs=0.08)


def test_standardisation_is_fitted_on_the_training_folds_only(monkeypatch):
    fitted = []

    class Spy(probe.StandardScaler):
        def fit(self, X, y=None, sample_weight=None):
            fitted.append(np.asarray(X).copy())
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(probe, "StandardScaler", Spy)
    codes, labels = _blobs(n_per_class=10, n_classes=3)
    codes[:, 0] = np.arange(len(codes))  # a row id, to tell which notes each fit saw
    linear_probe(codes, labels, folds=5, seed=0)
    assert len(fitted) == 5
    held_out = [set(range(len(codes))) - set(x[:, 0].astype(int)) for x in fitted]
    # every fit left a fold out, and the left-out folds are disjoint and cover every note once
    assert all(len(h) == len(codes) // 5 for h in held_out)
    assert set().union(*held_out) == set(range(len(codes)))
    assert sum(len(h) for h in held_out) == len(codes)


def test_a_fixed_seed_gives_the_same_probe_and_the_folds_follow_it():
    codes, labels = _blobs(n_per_class=30, n_classes=3, spread=3.0)  # overlapping: errors
    a = linear_probe(codes, labels, seed=7)
    b = linear_probe(codes, labels, seed=7)
    assert a["accuracy"] == b["accuracy"] and list(a["predictions"]) == list(b["predictions"])
    others = [linear_probe(codes, labels, seed=s)["predictions"] for s in (0, 1)]
    assert any(list(p) != list(a["predictions"]) for p in others)


def test_too_few_notes_for_the_folds_is_one_line_naming_the_key():
    codes, labels = _blobs(n_per_class=3, n_classes=2)
    with pytest.raises(SoundharvestError, match="probe.folds") as err:
        linear_probe(codes, labels, folds=5)
    assert "\n" not in str(err.value)
    with pytest.raises(SoundharvestError, match="need two"):
        linear_probe(codes, ["one"] * len(codes))


def test_probe_file_writes_one_row(tmp_path):
    codes, labels = _blobs(n_per_class=10, n_classes=2)
    save_npy(tmp_path / "codes.npy", codes.astype(np.float32))
    notes = pd.DataFrame({"note_str": [f"n{i}" for i in range(len(labels))], "family": labels})
    write_tsv(tmp_path / "notes.tsv", notes)
    table = probe_file(
        tmp_path / "codes.npy", tmp_path / "notes.tsv", tmp_path / "p.tsv", "stft", "ae"
    )
    back = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert list(back.columns) == list(probe.COLUMNS)
    assert back.loc[0, "model"] == "ae" and back.loc[0, "probe_accuracy"] == pytest.approx(1.0)
    assert back.loc[0, "chance_balanced"] == pytest.approx(0.5)
    assert len(table) == 1 and back.loc[0, "n_notes"] == 20 and back.loc[0, "folds"] == 5
